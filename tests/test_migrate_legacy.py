"""Legacy migration: the three shapes with every defect injected, exact counts, lake contents."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from papersys import lake
from papersys.cli import app
from papersys.config import Config
from papersys.errors import PapersysError, UsageError
from papersys.migration import DEFECT_KINDS, load_report, migrate_legacy
from papersys.migration.ids import IdResolver, classify_id
from papersys.migration.vectors import check_vectors
from tests import legacy_fixtures as lf


def counts(result) -> dict[tuple[str, str | None, str], int]:
    out: dict[tuple[str, str | None, str], int] = {}
    for issue in result.issues:
        key = (issue.file, issue.model, issue.kind)
        out[key] = out.get(key, 0) + issue.count
    return out


def ids_of(con, sql: str) -> set[str]:
    return {row[0] for row in con.execute(sql).fetchall()}


def rejects(con, model: str) -> dict[str, str]:
    return dict(
        con.execute(
            "SELECT arxiv_id, problem FROM embedding_rejects WHERE model = ? AND source = 'legacy'",
            [model],
        ).fetchall()
    )


# Columns that change on every run (timestamps, run ids) are left out of the comparison.
VOLATILE = {
    "legacy_papers": "landed_at, migration_run_id",
    "embeddings_jasper_v1": "embedded_at",
    "embeddings_conan_v1": "embedded_at",
    "embedding_rejects": "recorded_at",
}


def snapshot_lake(con) -> dict[str, list]:
    return {
        table: sorted(
            con.execute(f"SELECT * EXCLUDE ({volatile}) FROM {table}").fetchall(), key=repr
        )
        for table, volatile in VOLATILE.items()
    }


def file_digests(root: Path) -> dict[str, tuple[str, float]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in root.rglob("*")
        if p.is_file()
    }


# -- ids and vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2410.12850", ("2410.12850", "ok")),
        ("2410.12850v3", ("2410.12850", "ok")),
        ("2410.1285", ("2410.12850", "repaired")),
        ("2410.1", ("2410.10000", "repaired")),
        ("704.0001", ("0704.0001", "repaired")),
        ("1412.128", ("1412.1280", "repaired")),
        ("hep-th/9901001", ("hep-th/9901001", "ok")),
        ("math.AG/0601001v2", ("math.AG/0601001", "ok")),
        ("1412.12345", (None, "invalid")),  # 5 digits before 2015
        ("2413.00001", (None, "invalid")),  # month 13
        ("0612.1234", (None, "invalid")),  # before new-style ids
        ("abc", (None, "invalid")),
        (None, (None, "invalid")),
    ],
)
def test_classify_id(raw, expected):
    assert classify_id(raw) == expected


def test_repair_is_refused_when_the_repaired_id_exists_undamaged():
    resolver = IdResolver({"2410.12850"})
    assert resolver.resolve("2410.1285") == (None, "ambiguous_id")
    assert resolver.resolve("2410.1286") == ("2410.12860", "repaired_id")
    assert resolver.resolve("hep-th/9901001") == ("hep-th/9901001", None)


def test_check_vectors_classifies_every_problem():
    column = pa.array(
        [[1.0, 2.0], [np.nan, np.nan], [0.0, 0.0], [1.0], None, [1.0, np.inf]],
        pa.list_(pa.float16()),
    )
    check = check_vectors(column, 2)
    assert check.problems == [None, "nan", "zero", "wrong_dim", "null", "nan"]
    assert check.details[1] == "all values NaN"
    assert check.details[5] == "1 of 2 values not finite"
    assert check.valid_rows.tolist() == [0]
    assert check.matrix.dtype == np.float32 and check.matrix.tolist() == [[1.0, 2.0]]
    assert check.float16


# -- shape A ----------------------------------------------------------------------------------


def test_shape_a_counts_lake_contents_and_idempotent_rerun(config: Config, tmp_path: Path):
    source = lf.build_shape_a(tmp_path / "legacy_a")
    before = file_digests(source)
    result = migrate_legacy(config, str(source), model_specs=lf.A_MODELS, batch_size=4)
    assert result.shape == "A" and result.status == "completed"
    assert counts(result) == lf.A_EXPECTED_DEFECTS

    con = lake.connect(config)
    try:
        assert ids_of(con, "SELECT arxiv_id FROM legacy_papers") == lf.A_PAPERS
        assert con.execute("SELECT count(*) FROM legacy_papers").fetchone()[0] == len(lf.A_PAPERS)
        jasper = ids_of(con, "SELECT arxiv_id FROM embeddings_jasper_v1")
        assert jasper == lf.A_PAPERS - set(lf.A_JASPER_REJECTS)
        assert rejects(con, "jasper_v1") == lf.A_JASPER_REJECTS
        conan = ids_of(con, "SELECT arxiv_id FROM embeddings_conan_v1")
        assert conan == lf.A_PAPERS - set(lf.A_CONAN_REJECTS) - lf.A_CONAN_ABSENT
        assert rejects(con, "conan_v1") == lf.A_CONAN_REJECTS
        # The later copy of a duplicated id wins, metadata and vector alike.
        title, text = con.execute(
            "SELECT title, embedded_text FROM legacy_papers WHERE arxiv_id = '2301.00001'"
        ).fetchone()
        assert title == "Paper number 1, revised"
        assert text == "Paper number 1, revised\nWe study problem 7."
        vector, sha, model_id = con.execute(
            "SELECT embedding, text_sha256, model_id FROM embeddings_jasper_v1"
            " WHERE arxiv_id = '2301.00001'"
        ).fetchone()
        assert np.allclose(vector, lf.vec(7, lf.JASPER_DIM))
        assert sha == hashlib.sha256(text.encode()).hexdigest()
        assert model_id == "NovaSearch/jasper_en_vision_language_v1"
        # Old-style id untouched; damaged id repaired; null created kept as NULL.
        assert con.execute(
            "SELECT submitted_at::VARCHAR FROM legacy_papers WHERE arxiv_id = 'hep-th/9901001'"
        ).fetchone() == ("1999-01-05",)
        assert con.execute(
            "SELECT submitted_at FROM legacy_papers WHERE arxiv_id = '2301.00005'"
        ).fetchone() == (None,)
        assert con.execute(
            "SELECT dim FROM embedding_models WHERE name = 'conan_v1'"
        ).fetchone() == (lf.CONAN_DIM,)
        run = con.execute(
            "SELECT run_id, status, manifest FROM migration_runs WHERE run_id = ?", [result.run_id]
        ).fetchone()
        assert run[1] == "completed"
        manifest = json.loads(run[2])
        assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in source.glob("*.parquet")
        }
        assert {f["path"]: f["rows"] for f in manifest["files"]} == {
            "2023.parquet": 11,
            "2024.parquet": 4,
            "None.parquet": 1,
        }
        assert set(manifest["vector_types"]) == {
            "list<float>",
            f"fixed_size_list<float>[{lf.JASPER_DIM}]",
            f"fixed_size_list<float>[{lf.CONAN_DIM}]",
        }
        assert con.execute(
            "SELECT sum(rows) FROM migration_defects WHERE run_id = ?", [result.run_id]
        ).fetchone()[0] == sum(lf.A_EXPECTED_DEFECTS.values())
        first = snapshot_lake(con)
    finally:
        con.close()

    again = migrate_legacy(config, str(source), model_specs=lf.A_MODELS, batch_size=3)
    assert counts(again) == lf.A_EXPECTED_DEFECTS
    con = lake.connect(config)
    try:
        assert snapshot_lake(con) == first  # idempotent: same rows, nothing duplicated
        assert con.execute("SELECT count(*) FROM migration_runs").fetchone()[0] == 2
    finally:
        con.close()
    assert file_digests(source) == before  # the source is never written

    report = load_report(config)
    assert report.run_id == again.run_id
    assert counts(report) == lf.A_EXPECTED_DEFECTS
    assert report.totals == again.totals


def test_dry_run_writes_nothing(config: Config, lake_root: Path, tmp_path: Path):
    source = lf.build_shape_a(tmp_path / "legacy_a")
    result = migrate_legacy(config, str(source), model_specs=lf.A_MODELS, dry_run=True)
    assert result.dry_run and result.run_id is None
    assert counts(result) == lf.A_EXPECTED_DEFECTS
    assert result.totals["vectors_stored"] == 19
    assert not lake_root.exists()


def test_valid_vector_is_never_replaced_by_a_later_invalid_one(config: Config, tmp_path: Path):
    root = tmp_path / "src"
    root.mkdir()
    good = lf.paper("2301.00001", 1)
    bad = lf.paper("2301.00001", 2, jasper_v1=lf.nan_vec(lf.JASPER_DIM))
    pq.write_table(lf._a_table([good], fixed_size=False), root / "2023.parquet")
    pq.write_table(lf._a_table([bad], fixed_size=False), root / "2024.parquet")
    migrate_legacy(config, str(root), model_specs=lf.A_MODELS)
    con = lake.connect(config)
    try:
        assert np.allclose(
            con.execute("SELECT embedding FROM embeddings_jasper_v1").fetchone()[0],
            lf.vec(1, lf.JASPER_DIM),
        )
        assert rejects(con, "jasper_v1") == {}
        # Metadata follows the later copy.
        assert con.execute("SELECT title FROM legacy_papers").fetchone() == ("Paper number 2",)
    finally:
        con.close()


# -- shapes B and C ---------------------------------------------------------------------------


def test_shape_b_counts_and_lake(config: Config, tmp_path: Path):
    source = lf.build_shape_b(tmp_path / "legacy_b")
    result = migrate_legacy(config, str(source), model_specs=lf.B_MODELS)
    assert result.shape == "B"
    assert counts(result) == lf.B_EXPECTED_DEFECTS
    con = lake.connect(config)
    try:
        assert ids_of(con, "SELECT arxiv_id FROM legacy_papers") == lf.B_PAPERS
        assert ids_of(con, "SELECT arxiv_id FROM embeddings_jasper_v1") == lf.B_JASPER_VALID
        assert rejects(con, "jasper_v1") == lf.B_JASPER_REJECTS
        assert ids_of(con, "SELECT arxiv_id FROM embeddings_conan_v1") == {"2302.00001"}
        row = con.execute(
            """SELECT p.title, p.abstract, p.authors, p.categories, p.primary_category, p.doi,
                      p.comments, e.text_sha256, e.embedding, e.embedded_at::VARCHAR
               FROM legacy_papers p JOIN embeddings_jasper_v1 e USING (arxiv_id)
               WHERE arxiv_id = '2302.00001'"""
        ).fetchone()
        title, abstract, authors, cats, primary, doi, comments, sha, _, at = row
        assert authors == ["Ada Lovelace", "Alan Turing"] and cats == ["cs.CL", "cs.LG"]
        assert (primary, doi, comments) == ("cs.CL", "10.1000/1", "5 pages")
        # Shape B embedded title + "\n\n" + abstract.
        assert sha == hashlib.sha256(f"{title}\n\n{abstract}".encode()).hexdigest()
        assert at.startswith("2024-05-01")
        # latest.csv holds the later copy of 2402.00001; the f16 vector was widened.
        assert con.execute(
            "SELECT title, doi FROM legacy_papers WHERE arxiv_id = '2402.00001'"
        ).fetchone() == ("Split paper 9", "10.1000/9")
        f16 = con.execute(
            "SELECT embedding FROM embeddings_jasper_v1 WHERE arxiv_id = '2402.00001'"
        ).fetchone()[0]
        assert np.allclose(f16, lf.vec(7, lf.JASPER_DIM), atol=0.01)
    finally:
        con.close()


def test_shape_c_counts_and_lake(config: Config, tmp_path: Path):
    source = lf.build_shape_c(tmp_path / "legacy_c")
    result = migrate_legacy(config, str(source), model_specs=lf.C_MODELS)
    assert result.shape == "C"
    assert counts(result) == lf.C_EXPECTED_DEFECTS
    con = lake.connect(config)
    try:
        assert ids_of(con, "SELECT arxiv_id FROM legacy_papers") == lf.C_PAPERS
        assert ids_of(con, "SELECT arxiv_id FROM embeddings_legacy_c") == lf.C_VALID
        assert rejects(con, "legacy_c") == lf.C_REJECTS
        assert con.execute(
            "SELECT authors, submitted_at::VARCHAR FROM legacy_papers WHERE arxiv_id = '0704.0001'"
        ).fetchone() == (["Emmy Noether", "David Hilbert"], "2007-04-02")
        sha = con.execute(
            "SELECT text_sha256 FROM embeddings_legacy_c WHERE arxiv_id = '2310.00100'"
        ).fetchone()[0]
        text = "Sharded 2310.00100\nAbstract of 2310.00100."
        assert sha == hashlib.sha256(text.encode()).hexdigest()
    finally:
        con.close()


# -- options and errors -----------------------------------------------------------------------


def test_mapping_renames_unexpected_columns(config: Config, tmp_path: Path):
    root = tmp_path / "renamed"
    root.mkdir()
    table = lf._a_table([lf.paper("2301.00001", 1), lf.paper("2301.00002", 2)], fixed_size=True)
    table = table.rename_columns(
        [
            {"id": "arxiv_id", "abstract": "summary", "jasper_v1": "jasper"}.get(n, n)
            for n in table.column_names
        ]
    )
    pq.write_table(table, root / "2023.parquet")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[columns]\narxiv_id = "id"\nsummary = "abstract"\n\n[models]\njasper = "jasper_v1"\n'
    )
    result = migrate_legacy(config, str(root), mapping_file=mapping, model_specs=lf.A_MODELS)
    assert counts(result) == {}
    con = lake.connect(config)
    try:
        assert ids_of(con, "SELECT arxiv_id FROM embeddings_jasper_v1") == {
            "2301.00001",
            "2301.00002",
        }
        assert con.execute(
            "SELECT abstract FROM legacy_papers WHERE arxiv_id = '2301.00002'"
        ).fetchone() == ("We study problem 2.",)
    finally:
        con.close()


def test_unconfigured_model_and_wrong_dimension_are_usage_errors(config: Config, tmp_path: Path):
    source = lf.build_shape_a(tmp_path / "legacy_a")
    with pytest.raises(
        UsageError, match=r"legacy vectors 'jasper_v1' .* --model jasper_v1=NovaSearch"
    ):
        migrate_legacy(config, str(source))
    wrong = [
        f"jasper_v1=NovaSearch/jasper_en_vision_language_v1:{lf.JASPER_DIM + 1}",
        lf.A_MODELS[1],
    ]
    with pytest.raises(UsageError, match=r"2024.parquet: column jasper_v1 holds 8-d vectors"):
        migrate_legacy(config, str(source), model_specs=wrong)
    with pytest.raises(UsageError, match="not found"):
        migrate_legacy(config, str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="ALIAS=MODEL_NAME"):
        migrate_legacy(config, str(source), model_specs=["jasper_v1"])


def test_unreadable_file_and_file_without_ids(config: Config, tmp_path: Path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "2023.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PapersysError, match=r"2023.parquet: not a readable Parquet file .*remove"):
        migrate_legacy(config, str(root), dry_run=True)
    table = lf._a_table([lf.paper("2301.00001", 1)], fixed_size=False, drop=("id",))
    pq.write_table(table, root / "2023.parquet")
    result = migrate_legacy(config, str(root), model_specs=lf.A_MODELS, dry_run=True)
    assert counts(result) == {("2023.parquet", None, "missing_column"): 1}
    assert result.totals["papers_landed"] == 0 and result.totals["vectors_stored"] == 0


def test_hf_source_downloads_through_the_hub(config: Config, tmp_path: Path, monkeypatch):
    import huggingface_hub

    source = lf.build_shape_c(tmp_path / "hub_copy")
    calls = []

    def fake_snapshot_download(repo_id: str, repo_type: str) -> str:
        calls.append((repo_id, repo_type))
        return str(source)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    result = migrate_legacy(
        config, "hf://datasets/org/legacy", model_specs=lf.C_MODELS, dry_run=True
    )
    assert calls == [("org/legacy", "dataset")]
    assert result.source == "hf://datasets/org/legacy" and counts(result) == lf.C_EXPECTED_DEFECTS


def test_hf_source_offline_is_one_clear_line(config: Config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        PapersysError, match=r"cannot download hf://datasets/org/x .*local folder"
    ) as err:
        migrate_legacy(config, "hf://datasets/org/x")
    assert "\n" not in str(err.value)


def test_cli_migrate_legacy_and_report(config: Config, tmp_path: Path):
    source = lf.build_shape_a(tmp_path / "legacy_a")
    runner = CliRunner()
    models = [arg for spec in lf.A_MODELS for arg in ("--model", spec)]
    dry = runner.invoke(app, ["migrate", "legacy", str(source), "--dry-run", *models])
    assert dry.exit_code == 0, dry.output
    assert "dry run (nothing written)" in dry.output
    missing = runner.invoke(app, ["migrate", "legacy", str(source)])
    assert missing.exit_code == 2
    assert "Traceback" not in missing.output
    assert "error:" in missing.output and "--model jasper_v1=" in missing.output
    empty = runner.invoke(app, ["migrate", "report"])
    assert empty.exit_code == 1 and "no completed legacy migration" in empty.output
    real = runner.invoke(app, ["migrate", "legacy", str(source), *models, "--show", "100"])
    assert real.exit_code == 0, real.output
    report = runner.invoke(app, ["migrate", "report", "--show", "100"])
    assert report.exit_code == 0, report.output
    for text in ("duplicate_id_across_files", "ambiguous_id", "2301.0002", "None.parquet"):
        assert text in report.output
    assert "defects 17" in report.output
    runs = runner.invoke(app, ["migrate", "report", "--runs"])
    assert runs.exit_code == 0 and "completed" in runs.output


def test_dbt_kind_lists_match_the_code():
    folder = Path(__file__).resolve().parent.parent / "dbt_project" / "models" / "migration"
    yml = (folder / "_migration.yml").read_text()
    for kind in DEFECT_KINDS:
        assert f'"{kind}"' in (folder / "migration_report.sql").read_text()
        assert f'"{kind}"' in (folder / "migration_issues.sql").read_text()
        assert kind in yml
