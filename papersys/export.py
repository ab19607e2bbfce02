"""Export the lake as a Hugging Face dataset: yearly Parquet files, one folder per model.

Layout under the output directory::

    metadata/<year>.parquet                 one row per paper (the ``papers`` table)
    embeddings/<model>/<year>.parquet       arxiv_id, embedding FixedSizeList<float32>[dim], ...
    README.md                               dataset card with one ``configs`` entry per part

Vectors are stored in the lake as ``FLOAT[]`` lists (DuckLake has no fixed-size arrays) and
cast to ``FLOAT[dim]`` on the way out, so every reader sees a fixed-size float32 array.
Each file is streamed in record batches to a temporary file next to its target and renamed
into place, so a reader (or an interrupted export) never sees half a file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from papersys import lake
from papersys.config import Config
from papersys.errors import PapersysError, UsageError

log = logging.getLogger(__name__)

BATCH_ROWS = 65_536
HF_TOKEN_ENV = "HF_TOKEN"


@dataclass
class ExportedFile:
    path: Path
    kind: str  # metadata | embeddings
    year: int
    rows: int
    bytes: int
    model: str | None = None


@dataclass
class ExportResult:
    out_dir: Path
    files: list[ExportedFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files if f.kind == "metadata")


ProgressCallback = Callable[[ExportedFile], None]


def _years(con: duckdb.DuckDBPyConnection, wanted: Sequence[int] | None) -> list[int]:
    present = [
        int(y)
        for (y,) in con.execute(
            "SELECT DISTINCT year FROM lake.papers WHERE year IS NOT NULL ORDER BY year"
        ).fetchall()
    ]
    if not wanted:
        return present
    missing = sorted(set(wanted) - set(present))
    if missing:
        have = f"{present[0]}-{present[-1]}" if present else "none"
        raise UsageError(
            f"--year {', '.join(map(str, missing))}: no papers from that year in the lake "
            f"(years present: {have})"
        )
    return sorted(set(wanted))


def _models(
    con: duckdb.DuckDBPyConnection, config: Config, wanted: Sequence[str] | None
) -> dict[str, int]:
    """Model name -> dim for the models to export (registered in the lake, with a table)."""
    registered = dict(con.execute("SELECT name, dim FROM lake.embedding_models").fetchall())
    names = list(wanted) if wanted else list(config.embedding.models)
    chosen: dict[str, int] = {}
    for name in names:
        if name not in registered or not lake.table_exists(con, lake.embeddings_table(name)):
            if wanted:
                known = ", ".join(sorted(registered)) or "none"
                raise UsageError(
                    f"--model {name}: no embeddings for that model in the lake (models: {known})"
                )
            continue
        chosen[name] = int(registered[name])
    return chosen


def _write_atomically(
    target: Path, reader: pa.RecordBatchReader, schema: pa.Schema | None = None
) -> int:
    """Stream ``reader`` into ``target`` via a temp file + rename; return the row count."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema or reader.schema, compression="zstd") as writer:
            for batch in reader:
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _metadata_query(year: int) -> tuple[str, list[object]]:
    return "SELECT * FROM lake.papers WHERE year = ? ORDER BY arxiv_id", [year]


def _embeddings_query(model: str, dim: int, year: int) -> tuple[str, list[object]]:
    table = lake.embeddings_table(model)
    # One vector per paper: if a paper was embedded twice, the newest vector wins.
    return (
        f"""SELECT e.arxiv_id, e.embedding::FLOAT[{int(dim)}] AS embedding, e.text_sha256,
                   e.model_id, e.embedded_at
            FROM lake.{table} e JOIN lake.papers p ON p.arxiv_id = e.arxiv_id
            WHERE p.year = ?
            QUALIFY row_number() OVER (PARTITION BY e.arxiv_id ORDER BY e.embedded_at DESC) = 1
            ORDER BY e.arxiv_id""",
        [year],
    )


def export(
    config: Config,
    out_dir: Path,
    *,
    years: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    on_file: ProgressCallback | None = None,
    metadata: bool = True,
) -> ExportResult:
    """Write the dataset layout under ``out_dir``; return what was written."""
    con = lake.connect(config)
    try:
        if not lake.table_exists(con, "papers"):
            raise PapersysError("the lake has no papers table yet; run `papersys transform` first")
        year_list = _years(con, years)
        model_dims = _models(con, config, models)
        result = ExportResult(out_dir)
        for year in year_list:
            if metadata:
                sql, params = _metadata_query(year)
                _export_file(
                    con,
                    result,
                    out_dir / "metadata" / f"{year}.parquet",
                    sql,
                    params,
                    "metadata",
                    year,
                    None,
                    on_file,
                )
            for model, dim in model_dims.items():
                sql, params = _embeddings_query(model, dim, year)
                target = out_dir / "embeddings" / model / f"{year}.parquet"
                _export_file(con, result, target, sql, params, "embeddings", year, model, on_file)
        _write_card(out_dir, config, model_dims)
        return result
    except OSError as exc:
        raise PapersysError(
            f"cannot write the export to {out_dir}: {exc.strerror}; choose a writable directory"
        ) from None
    finally:
        con.close()


def _export_file(
    con: duckdb.DuckDBPyConnection,
    result: ExportResult,
    target: Path,
    sql: str,
    params: list[object],
    kind: str,
    year: int,
    model: str | None,
    on_file: ProgressCallback | None,
) -> None:
    try:
        reader = con.execute(sql, params).to_arrow_reader(BATCH_ROWS)
        rows = _write_atomically(target, reader)
    except duckdb.ConversionException as exc:
        raise PapersysError(
            f"embeddings_{model}: a stored vector does not have the registered dimension "
            f"({str(exc).splitlines()[0]}); re-embed with `papersys embed-gaps`"
        ) from None
    exported = ExportedFile(target, kind, year, rows, target.stat().st_size, model)
    result.files.append(exported)
    if on_file is not None:
        on_file(exported)


def _write_card(out_dir: Path, config: Config, model_dims: dict[str, int]) -> None:
    """A dataset card whose ``configs`` let ``datasets.load_dataset`` find each part."""
    lines = ["---", "configs:", "- config_name: metadata", "  data_files: metadata/*.parquet"]
    for model in model_dims:
        if (out_dir / "embeddings" / model).is_dir():
            lines += [
                f"- config_name: embeddings_{model}",
                f"  data_files: embeddings/{model}/*.parquet",
            ]
    lines += ["license: other", "---", "", "# arXiv metadata and embeddings", ""]
    lines.append(
        "Exported by papersys. `metadata/<year>.parquet` holds one row per paper (`arxiv_id` "
        "is versionless, `year` is the year of the first version); "
        "`embeddings/<model>/<year>.parquet` "
        "holds one float32 vector per paper (`text_sha256` says which text it embeds: compare it "
        "with the metadata's `text_sha256`)."
    )
    lines.append("")
    for model, dim in model_dims.items():
        model_id = config.embedding.models[model].model if model in config.embedding.models else ""
        lines.append(f"- `{model}`: {model_id}, {dim} dimensions")
    lines.append("")
    target = out_dir / "README.md"
    tmp = target.with_name(f".README.md.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, target)


def push(out_dir: Path, repo_id: str, *, private: bool = False) -> str:
    """Upload an export folder to a Hugging Face dataset repo; return the commit URL.

    The token comes only from ``$HF_TOKEN`` and is never logged or put in an error message.
    """
    token = os.environ.get(HF_TOKEN_ENV)
    if not token:
        raise UsageError(f"--push {repo_id}: set ${HF_TOKEN_ENV} to a Hugging Face write token")
    if not (out_dir / "metadata").is_dir():
        raise UsageError(f"--push: {out_dir} holds no export (no metadata/ folder)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise PapersysError(
            f"--push {repo_id}: HF_HUB_OFFLINE is set; unset it to upload (the export in "
            f"{out_dir} is complete)"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(out_dir),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message="papersys export",
            allow_patterns=["README.md", "metadata/*.parquet", "embeddings/*/*.parquet"],
        )
    except HfHubHTTPError as exc:
        raise PapersysError(
            f"--push {repo_id}: the Hub refused the upload ({_scrub(str(exc), token)}); "
            "check the repo name and that the token can write to it"
        ) from None
    except Exception as exc:  # network errors come from several libraries (httpx, ssl, os)
        raise PapersysError(
            f"--push {repo_id}: cannot reach the Hugging Face Hub ({_scrub(str(exc), token)}); "
            f"the export in {out_dir} is complete, push again when online"
        ) from None
    return str(getattr(info, "commit_url", info))


def _scrub(text: str, token: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "no detail"
    return first.replace(token, "***")
