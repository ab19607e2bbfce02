from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from papersys import export as exporter
from papersys import lake, snapshots
from papersys.cli import app
from papersys.config import Config, load_config
from papersys.errors import PapersysError, UsageError
from papersys.ingestion.harvest import harvest
from papersys.ingestion.replay import OAIReplay, ReplayServer
from tests.operate_fixtures import add_legacy_papers, add_vectors, oai_pages, transform

LEGACY = [("1901.00001", 2019), ("1901.00002", 2019), ("2003.00001", 2020)]


@pytest.fixture(scope="module")
def _built_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, int]:
    """Built once: 6 real OAI papers (2007) and 3 legacy papers (2019, 2020), all embedded."""
    root = tmp_path_factory.mktemp("export") / "lake"
    config = load_config(overrides={"lake.root": str(root)})
    saved = os.environ.get("PAPERSYS_LAKE_ROOT")
    os.environ["PAPERSYS_LAKE_ROOT"] = str(root)  # dbt's profile reads it
    try:
        replay = OAIReplay(oai_pages([3, 3]))
        with ReplayServer(replay) as server:
            config.ingestion.endpoint = server.url  # type: ignore[misc]
            config.ingestion.request_spacing = 0.0  # type: ignore[misc]
            harvest(config, metadata_prefix=replay.prefix)
        con = lake.connect(config)
        add_legacy_papers(con, LEGACY)
        transform(config)
        vectors = add_vectors(con, config)
        snapshot = snapshots.current_snapshot(con)
        con.close()
    finally:
        if saved is None:
            os.environ.pop("PAPERSYS_LAKE_ROOT", None)
        else:
            os.environ["PAPERSYS_LAKE_ROOT"] = saved
    return root, vectors, snapshot


@pytest.fixture
def filled(
    _built_lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Config, dict[str, np.ndarray]]]:
    """The shared lake; whatever a test changes is rolled back afterwards."""
    root, vectors, snapshot = _built_lake
    monkeypatch.setenv("PAPERSYS_LAKE_ROOT", str(root))
    monkeypatch.delenv("PAPERSYS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    yield config, vectors
    con = lake.connect(config)
    snapshots.rollback(con, snapshot)
    con.close()


def test_export_layout_types_and_contents(filled, tmp_path: Path) -> None:
    config, vectors = filled
    out = tmp_path / "export"
    result = exporter.export(config, out)
    names = sorted(str(f.path.relative_to(out)) for f in result.files)
    assert names == [
        "embeddings/minilm/2007.parquet",
        "embeddings/minilm/2019.parquet",
        "embeddings/minilm/2020.parquet",
        "metadata/2007.parquet",
        "metadata/2019.parquet",
        "metadata/2020.parquet",
    ]
    assert result.rows == 9
    # No temporary files left behind.
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]

    meta = pq.read_table(out / "metadata" / "2019.parquet")
    assert meta.column("arxiv_id").to_pylist() == ["1901.00001", "1901.00002"]
    assert set(meta.column("year").to_pylist()) == {2019}
    for column in ("title", "abstract", "authors", "categories", "text_sha256"):
        assert column in meta.column_names

    emb = pq.read_table(out / "embeddings" / "minilm" / "2007.parquet")
    assert emb.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert emb.num_rows == 6
    for arxiv_id, vector in zip(
        emb.column("arxiv_id").to_pylist(), emb.column("embedding").to_pylist(), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(vector, dtype=np.float32), vectors[arxiv_id])

    # polars reads the same files, as fixed-size arrays.
    frame = pl.read_parquet(out / "embeddings" / "minilm" / "2020.parquet")
    assert frame.schema["embedding"] == pl.Array(pl.Float32, 384)
    assert frame["arxiv_id"].to_list() == ["2003.00001"]
    all_meta = pl.read_parquet(out / "metadata" / "*.parquet")
    assert all_meta.height == 9 and all_meta["arxiv_id"].n_unique() == 9

    card = (out / "README.md").read_text()
    assert "config_name: embeddings_minilm" in card and "data_files: metadata/*.parquet" in card


def test_export_filters_by_year_and_model(filled, tmp_path: Path) -> None:
    config, _ = filled
    out = tmp_path / "only2019"
    result = exporter.export(config, out, years=[2019], models=["minilm"])
    assert sorted(str(f.path.relative_to(out)) for f in result.files) == [
        "embeddings/minilm/2019.parquet",
        "metadata/2019.parquet",
    ]
    with pytest.raises(UsageError, match=r"--year 1999: no papers from that year .*2007-2020"):
        exporter.export(config, out, years=[1999])
    with pytest.raises(UsageError, match=r"--model specter: no embeddings for that model"):
        exporter.export(config, out, models=["specter"])


def test_export_keeps_the_newest_vector_of_a_paper_embedded_twice(filled, tmp_path: Path) -> None:
    config, _ = filled
    con = lake.connect(config)
    newer = np.zeros(384, dtype=np.float32)
    newer[0] = 1.0
    sha = con.execute("SELECT text_sha256 FROM papers WHERE arxiv_id = '2003.00001'").fetchone()[0]
    con.execute(
        "INSERT INTO embeddings_minilm VALUES ('2003.00001', ?, ?, 'test-model', "
        "now() + INTERVAL 1 HOUR)",
        [newer.tolist(), sha],
    )
    con.close()
    exporter.export(config, tmp_path / "x", years=[2020])
    table = pq.read_table(tmp_path / "x" / "embeddings" / "minilm" / "2020.parquet")
    assert table.num_rows == 1
    np.testing.assert_array_equal(np.asarray(table.column("embedding")[0].as_py()), newer)


def test_a_wrong_length_vector_fails_clearly_and_leaves_no_partial_file(
    filled, tmp_path: Path
) -> None:
    config, _ = filled
    out = tmp_path / "bad"
    exporter.export(config, out, years=[2019])
    before = (out / "embeddings" / "minilm" / "2019.parquet").read_bytes()
    con = lake.connect(config)
    # Written behind the validation of embed-gaps, as a corrupted legacy import could be.
    con.execute("UPDATE embeddings_minilm SET embedding = [1.0, 2.0] WHERE arxiv_id = '1901.00002'")
    con.close()
    with pytest.raises(PapersysError, match="registered dimension"):
        exporter.export(config, out, years=[2019])
    # The previous export of that year is intact and no temp file is left.
    assert (out / "embeddings" / "minilm" / "2019.parquet").read_bytes() == before
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_export_before_transform_is_a_clear_error(config: Config, tmp_path: Path) -> None:
    with pytest.raises(PapersysError, match="run `papersys transform` first"):
        exporter.export(config, tmp_path / "out")


def test_export_cli(filled, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["export", str(out), "--year", "2007", "--year", "2020"])
    assert result.exit_code == 0, result.output
    assert "metadata/2007.parquet" in result.output
    assert sorted(p.name for p in (out / "metadata").iterdir()) == ["2007.parquet", "2020.parquet"]
    bad = CliRunner().invoke(app, ["export", str(out), "--model", "nope"])
    assert bad.exit_code == 2 and "--model nope" in bad.output


def test_push_needs_a_token_and_never_shows_it(
    filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = filled
    out = tmp_path / "push"
    exporter.export(config, out, years=[2019])
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(UsageError, match=r"set \$HF_TOKEN"):
        exporter.push(out, "me/arxiv")
    secret = "hf_SECRETsecretSECRET"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PapersysError, match="HF_HUB_OFFLINE is set") as offline:
        exporter.push(out, "me/arxiv")
    assert secret not in str(offline.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    # The Hub cannot be reached from tests: stand in for its client, check what is uploaded.
    calls: dict[str, object] = {}

    class FakeApi:
        def __init__(self, token: str) -> None:
            calls["token"] = token

        def create_repo(self, repo_id: str, **kwargs: object) -> None:
            calls["create"] = (repo_id, kwargs)

        def upload_folder(self, **kwargs: object) -> object:
            calls["upload"] = kwargs
            return type("Info", (), {"commit_url": "https://hf.co/datasets/me/arxiv/commit/1"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert exporter.push(out, "me/arxiv").endswith("/commit/1")
    assert calls["token"] == secret
    assert calls["create"] == (
        "me/arxiv",
        {"repo_type": "dataset", "private": False, "exist_ok": True},
    )
    upload = calls["upload"]
    assert isinstance(upload, dict)
    assert upload["folder_path"] == str(out) and upload["repo_type"] == "dataset"

    class Unreachable(FakeApi):
        def create_repo(self, repo_id: str, **kwargs: object) -> None:
            raise ConnectionError(f"cannot connect (token={secret})")

    monkeypatch.setattr(huggingface_hub, "HfApi", Unreachable)
    with pytest.raises(PapersysError, match="cannot reach the Hugging Face Hub") as down:
        exporter.push(out, "me/arxiv")
    assert secret not in str(down.value)


@pytest.mark.slow
def test_demo_then_export_end_to_end(config: Config, tmp_path: Path) -> None:
    """`papersys demo` fills a fresh lake offline; its vectors export and read back."""
    from papersys.ingestion.replay import SAMPLE_DIR

    expected = sum(p.read_bytes().count(b"<record>") for p in SAMPLE_DIR.glob("*.xml"))
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    for step in ("1/4 ingest", "2/4 transform", "3/4 embed-gaps", "4/4 status"):
        assert step in result.output
    assert "duckdb -init sql/attach.sql" in result.output or "ATTACH 'ducklake:" in result.output
    assert "array_cosine_similarity" in result.output
    con = lake.connect(config)
    assert con.execute(
        "SELECT count(*), count(DISTINCT arxiv_id) FROM embeddings_minilm"
    ).fetchone() == (expected, expected)
    assert con.execute("SELECT count(*) FROM missing_embeddings").fetchone()[0] == 0
    # The printed similarity query runs as printed.
    query = result.output.split("by cosine similarity of their vectors\n")[1].split(";")[0]
    neighbours = con.execute(query).fetchall()
    con.close()
    assert len(neighbours) == 5 and all(-1.0 <= sim <= 1.0 for _, _, sim in neighbours)

    out = tmp_path / "dataset"
    exported = runner.invoke(app, ["export", str(out)])
    assert exported.exit_code == 0, exported.output
    metadata = pl.read_parquet(out / "metadata" / "*.parquet")
    vectors = pl.read_parquet(out / "embeddings" / "minilm" / "*.parquet")
    assert metadata.height == expected and vectors.height == expected
    assert vectors.schema["embedding"] == pl.Array(pl.Float32, 384)
    norms = np.linalg.norm(vectors["embedding"].to_numpy(), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)  # MiniLM vectors are normalized
