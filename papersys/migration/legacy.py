"""`papersys migrate legacy`: import a legacy dataset, streaming, and account for every defect.

The run reads the source in record batches (Parquet row groups are never loaded whole, CSV is
read block by block), so memory stays flat in the size of a year. Per batch, in ONE
transaction: metadata rows replace those with the same id in ``legacy_papers``; valid vectors
replace those with the same id in ``embeddings_<model>``; invalid vectors go to
``embedding_rejects`` (source 'legacy') unless a valid vector for the paper was already
imported; and every defect found goes to ``migration_defects``. A rerun therefore ends in the
same state (idempotent), and a crashed run can simply be run again.

Which copy of a paper wins: files are read null-year first, then by year, then ``latest.csv``;
within a file, rows in order; the last copy of the metadata wins (increments were appended to
later files). For vectors, a valid vector is never replaced by an invalid one.

Text that was embedded (its sha256 is stored with each vector, so dbt can tell fresh from
stale): shape A ``title + "\\n" + abstract``; shape B ``title + "\\n\\n" + abstract``; shape C
is undocumented and assumed to be shape A's, the generation it came from. The text is hashed
exactly as the legacy system embedded it, from the file's own title and abstract: when those
are whitespace-normalized (as in the published yearly files) the hash equals the one dbt
computes for the paper, so the vector counts as fresh; when they are not, the vector was
computed from a different text than papersys would embed, and reporting it as stale is right.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from papersys import lake
from papersys.config import Config, EmbeddingModelConfig, check_model_name
from papersys.errors import PapersysError, UsageError
from papersys.migration.ids import IdResolver, classify_id
from papersys.migration.source import (
    LegacyFile,
    LegacySource,
    Mapping,
    detect,
    load_mapping,
    resolve_source,
    sha256_file,
)
from papersys.migration.vectors import (
    VectorCheck,
    check_vectors,
    is_vector_type,
    vector_type_name,
    vectors_to_arrow,
)

# Every kind of defect the migration counts (migration_defects.kind).
DEFECT_KINDS: dict[str, str] = {
    "none_year_file": "file of rows with a null year (*_None.parquet); rows = its rows",
    "missing_column": "an expected column is absent from the file (detail names it)",
    "missing_manifest": "an embeddings alias folder has no readable manifest.json",
    "manifest_mismatch": "manifest.json disagrees with the files (rows, dimension)",
    "invalid_id": "id is not an arXiv id and cannot be repaired; row not imported",
    "repaired_id": "id damaged by float parsing, repaired (detail: the damaged id)",
    "ambiguous_id": "damaged id whose repair is also present undamaged; row not imported",
    "duplicate_id_in_file": "id seen earlier in the same file (the later copy wins)",
    "duplicate_id_across_files": "id seen in an earlier file (the later copy wins)",
    "null_created": "no submission date (created/publish_date/published_at)",
    "unknown_id": "vector for an id absent from the metadata; not imported",
    "null_vector": "no vector for this model in the row (the paper stays absent)",
    "wrong_dim": "vector length differs from the model's dimension; rejected",
    "nan": "vector has NaN/inf values (failed inference); rejected",
    "zero": "all-zero placeholder vector; rejected",
    "f16_vectors": "vectors stored as float16, widened to float32 (rows = vectors)",
}

TEXT_SEPARATOR = {"A": "\n", "B": "\n\n", "C": "\n"}
# Legacy aliases whose models are known: used in the hint when one is not configured.
KNOWN_LEGACY_MODELS = {
    "jasper_v1": ("NovaSearch/jasper_en_vision_language_v1", 1024),
    "conan_v1": ("TencentBAC/Conan-embedding-v1", 1792),
}
_MODEL_SPEC = re.compile(r"^(?P<model>.+):(?P<dim>\d+)$")

# Columns each shape's metadata has (our names), with the Arrow type used when one is missing.
_STR = pa.string()
_LIST = pa.list_(pa.string())
EXPECTED_COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "A": {
        "id": _STR,
        "title": _STR,
        "abstract": _STR,
        "authors": _LIST,
        "categories": _LIST,
        "created": _STR,
        "updated": _STR,
        "license": _STR,
    },
    "B": {
        "paper_id": _STR,
        "title": _STR,
        "abstract": _STR,
        "categories": _STR,
        "primary_category": _STR,
        "authors": _STR,
        "published_at": _STR,
        "updated_at": _STR,
        "doi": _STR,
        "comment": _STR,
        "journal_ref": _STR,
        "license": _STR,
    },
    "C": {
        "id": _STR,
        "title": _STR,
        "abstract": _STR,
        "publish_date": pa.date32(),
        "update_date": pa.date32(),
        "categories": _LIST,
        "authors": _STR,
    },
}
ID_COLUMN = {"A": "id", "B": "paper_id", "C": "id"}
CREATED_COLUMN = {"A": "created", "B": "published_at", "C": "publish_date"}
REQUIRED_COLUMNS = ("title", "abstract")


def _split(expr: str, sep: str) -> str:
    return f"list_filter(list_transform(string_split({expr}, '{sep}'), x -> trim(x)), x -> x <> '')"


# legacy_papers columns from a registered batch `_mig_papers`, per shape.
_PAPER_SELECT = {
    "A": """arxiv_id, title, abstract, authors, categories, categories[1],
        try_cast(left(created, 10) AS DATE), try_cast(left(updated, 10) AS DATE),
        NULL, NULL, NULL, nullif(license, '')""",
    "B": f"""arxiv_id, nullif(title, ''), nullif(abstract, ''), {_split("authors", ";")},
        {_split("categories", ";")},
        coalesce(nullif(trim(primary_category), ''), {_split("categories", ";")}[1]),
        try_cast(left(published_at, 10) AS DATE), try_cast(left(updated_at, 10) AS DATE),
        nullif(trim(doi), ''), nullif(journal_ref, ''), nullif(comment, ''), nullif(license, '')""",
    "C": f"""arxiv_id, title, abstract, {_split("authors", ", ")}, categories, categories[1],
        try_cast(publish_date AS DATE), try_cast(update_date AS DATE), NULL, NULL, NULL, NULL""",
}


@dataclass(frozen=True)
class ModelTarget:
    """Where the vectors of one legacy alias go."""

    alias: str
    name: str
    model_id: str
    dim: int


@dataclass
class FileStats:
    """What one file (or one model's vectors in it) contributed."""

    file: str
    role: str
    year: str
    model: str | None
    rows: int = 0
    papers_landed: int = 0
    vectors_stored: int = 0
    vectors_rejected: int = 0
    sha256: str = ""
    bytes: int = 0
    vector_type: str | None = None


@dataclass
class IssueCount:
    file: str
    year: str
    model: str | None
    kind: str
    count: int
    examples: list[str] = field(default_factory=list)


@dataclass
class MigrationResult:
    source: str
    shape: str
    dry_run: bool
    run_id: str | None
    status: str
    models: list[ModelTarget]
    files: list[FileStats]
    issues: list[IssueCount]
    manifest: dict[str, Any]
    elapsed_s: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        meta = [f for f in self.files if f.model is None]
        vec = [f for f in self.files if f.model is not None]
        return {
            "rows": sum(f.rows for f in meta),
            "papers_landed": sum(f.papers_landed for f in meta),
            "vectors_stored": sum(f.vectors_stored for f in vec),
            "vectors_rejected": sum(f.vectors_rejected for f in vec),
            "defects": sum(i.count for i in self.issues),
        }


@dataclass
class Progress:
    file: str
    rows_done: int
    rows_total: int


ProgressCallback = Callable[[Progress], None]


def parse_model_specs(specs: list[str] | None) -> dict[str, str]:
    """``--model ALIAS=NAME`` or ``--model ALIAS=MODEL_ID:DIM`` → {alias: right-hand side}."""
    parsed: dict[str, str] = {}
    for spec in specs or []:
        alias, sep, target = spec.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise UsageError(
                f"--model {spec!r}: use ALIAS=MODEL_NAME or ALIAS=MODEL_ID:DIM, e.g. "
                "jasper_v1=NovaSearch/jasper_en_vision_language_v1:1024"
            )
        parsed[alias.strip()] = target.strip()
    return parsed


def resolve_models(
    config: Config, aliases: dict[str, str], specs: dict[str, str]
) -> tuple[dict[str, ModelTarget], Config]:
    """Map legacy aliases (alias → a file holding them) to models; returns them and a Config
    copy that also holds the models defined by ``ALIAS=MODEL_ID:DIM`` specs."""
    extra: dict[str, EmbeddingModelConfig] = {}
    targets: dict[str, ModelTarget] = {}
    configured = config.embedding.models
    for alias, where in aliases.items():
        rhs = specs.get(alias)
        definition = _MODEL_SPEC.match(rhs) if rhs else None
        if rhs is None or definition:
            name = alias
        else:
            # ALIAS=NAME, possibly together with NAME=MODEL_ID:DIM.
            name = rhs
            chained = specs.get(name)
            definition = _MODEL_SPEC.match(chained) if chained else None
        if definition:
            check_model_name(name)
            dim = int(definition.group("dim"))
            if name in configured and configured[name].dim != dim:
                raise UsageError(
                    f"--model {alias}: model '{name}' is configured with dim "
                    f"{configured[name].dim}, not {dim}"
                )
            model_cfg = configured.get(name) or extra.setdefault(
                name, EmbeddingModelConfig(model=definition.group("model"), dim=dim)
            )
        elif name in configured:
            model_cfg = configured[name]
        else:
            hint_model, hint_dim = KNOWN_LEGACY_MODELS.get(alias, ("MODEL_ID", "DIM"))
            raise UsageError(
                f"legacy vectors '{alias}' (in {where}) have no model: add "
                f"a table embedding.models.{alias} (model, dim) to the config, or pass "
                f"--model {alias}={hint_model}:{hint_dim} (or --model {alias}=NAME of a "
                "configured model)"
            )
        targets[alias] = ModelTarget(alias, name, model_cfg.model, model_cfg.dim)
    names = [t.name for t in targets.values()]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise UsageError(
            f"several legacy aliases map to model {', '.join(sorted(dupes))}; "
            "map each to its own model"
        )
    models = {**configured, **extra}
    new_config = config.model_copy(
        update={"embedding": config.embedding.model_copy(update={"models": models})}
    )
    return targets, new_config


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _valid_date(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, date):
        return True
    try:
        date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        return False
    return True


class _Run:
    """State of one migration run (ids seen, counts, the open lake connection)."""

    def __init__(
        self,
        source: LegacySource,
        mapping: Mapping,
        targets: dict[str, ModelTarget],
        con: duckdb.DuckDBPyConnection | None,
        run_id: str | None,
        batch_size: int,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.source = source
        self.shape = source.shape
        self.mapping = mapping
        self.targets = targets
        self.con = con
        self.run_id = run_id
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.started = datetime.now(UTC)
        self.seen_papers: dict[str, int] = {}  # id → index of the file it was last seen in
        self.seen_vectors: dict[str, dict[str, int]] = {a: {} for a in targets}
        self.valid_vectors: dict[str, set[str]] = {a: set() for a in targets}
        self.text_index: dict[str, str] = {}  # shapes B/C: id → sha256 of the embedded text
        self.counts: Counter[tuple[str, str, str | None, str]] = Counter()
        self.examples: dict[tuple[str, str, str | None, str], list[str]] = {}
        self.stats: list[FileStats] = []
        self.resolvers: dict[str, IdResolver] = {}
        self.rows_done = 0
        self.rows_total = 0
        self._pending: list[tuple[Any, ...]] = []  # defect rows of the batch being built

    # -- bookkeeping ---------------------------------------------------------------------
    def defect(
        self,
        f: LegacyFile,
        kind: str,
        arxiv_id: str | None = None,
        detail: str | None = None,
        model: str | None = None,
        rows: int = 1,
    ) -> None:
        key = (f.rel, f.year, model, kind)
        self.counts[key] += rows
        if arxiv_id is not None:
            examples = self.examples.setdefault(key, [])
            if len(examples) < 5:
                examples.append(arxiv_id)
        self._pending.append((f.rel, f.year, kind, model, arxiv_id, detail, rows))

    def progress(self, f: LegacyFile, rows: int) -> None:
        self.rows_done += rows
        if self.on_progress:
            self.on_progress(Progress(f.rel, self.rows_done, max(self.rows_total, self.rows_done)))

    def rename(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if self.mapping.columns:
            table = table.rename_columns(
                [self.mapping.columns.get(n, n) for n in table.column_names]
            )
        return table

    # -- reading -------------------------------------------------------------------------
    def _csv_header(self, f: LegacyFile) -> list[str]:
        with f.path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])

    def batches(self, f: LegacyFile, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Record batches of a file with our column names (columns: ours, None = all)."""
        if f.fmt == "parquet":
            # pre_buffer off + a stream buffer: a row group is decoded batch by batch, never
            # held whole (a 200k-row group of 1536-d vectors would be 1.2 GB).
            pf = pq.ParquetFile(f.path, pre_buffer=False, buffer_size=1 << 22)
            names = pf.schema_arrow.names
            wanted = None
            if columns is not None:
                wanted = [n for n in names if self.mapping.columns.get(n, n) in columns]
            for batch in pf.iter_batches(batch_size=self.batch_size, columns=wanted):
                yield self.rename(batch)
            return
        header = self._csv_header(f)
        include = header
        if columns is not None:
            include = [n for n in header if self.mapping.columns.get(n, n) in columns]
        if not include:
            return
        reader = pacsv.open_csv(
            f.path,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                include_columns=include,
                strings_can_be_null=False,
            ),
        )
        for batch in reader:
            yield self.rename(batch)

    def columns_of(self, f: LegacyFile) -> dict[str, pa.DataType]:
        if f.fmt == "parquet":
            schema = pq.read_schema(f.path)
            return {self.mapping.columns.get(n, n): schema.field(n).type for n in schema.names}
        return {self.mapping.columns.get(n, n): pa.string() for n in self._csv_header(f)}

    # -- passes --------------------------------------------------------------------------
    def prepass_ids(self) -> None:
        """Read only the id columns: which ids the source holds intact (to tell repairable
        damaged ids from ambiguous ones) and how many rows there are. Metadata files and each
        alias's embedding files are separate universes: a damaged id in an embeddings file is
        repaired against the ids of that alias's files, then matched to the metadata."""
        undamaged: dict[str, set[str]] = {}
        for f in self.source.files:
            key = f.alias if f.role == "embeddings" else ""
            id_col = "paper_id" if self.shape == "B" else "id"
            seen = undamaged.setdefault(key or "", set())
            if id_col not in self.columns_of(f):
                continue
            rows = 0
            for batch in self.batches(f, [id_col]):
                rows += batch.num_rows
                for raw in batch.column(id_col).to_pylist():
                    canonical, status = classify_id(raw)
                    if status == "ok":
                        seen.add(canonical)  # type: ignore[arg-type]
            f.rows = rows
        self.resolvers = {key: IdResolver(ids) for key, ids in undamaged.items()}
        self.rows_total = sum(f.rows or 0 for f in self.source.files)

    def file_checks(
        self, f: LegacyFile, columns: dict[str, pa.DataType], model: str | None = None
    ) -> bool:
        """File-level defects; False when the file cannot be imported at all."""
        if f.year == "None":
            self.defect(
                f,
                "none_year_file",
                detail=f"{f.rows or 0} rows without a year",
                model=model,
                rows=f.rows or 0,
            )
        if f.role == "embeddings":
            missing = [
                c
                for c in ("paper_id" if self.shape == "B" else "id", "embedding")
                if c not in columns
            ]
        else:
            missing = [c for c in EXPECTED_COLUMNS[self.shape] if c not in columns]
        for column in missing:
            self.defect(f, "missing_column", detail=column, model=model)
        blocking = {ID_COLUMN[self.shape], *REQUIRED_COLUMNS, "embedding", "paper_id", "id"}
        return not any(c in blocking for c in missing)

    def migrate_metadata_file(self, file_no: int, f: LegacyFile) -> None:
        columns = self.columns_of(f)
        stats = FileStats(f.rel, f.role, f.year, None, sha256=f.sha256, bytes=f.bytes)
        self.stats.append(stats)
        vector_targets = {}
        if f.role == "combined":
            for alias, target in self.targets.items():
                if alias in columns and is_vector_type(columns[alias]):
                    vs = FileStats(
                        f.rel,
                        f.role,
                        f.year,
                        target.name,
                        vector_type=vector_type_name(columns[alias]),
                    )
                    vector_targets[alias] = (target, vs)
                    self.stats.append(vs)
                else:
                    self.defect(f, "missing_column", detail=alias, model=target.name)
        if not self.file_checks(f, columns):
            self.progress(f, f.rows or 0)
            self.flush(f, None, {})
            return
        expected = EXPECTED_COLUMNS[self.shape]
        id_col = ID_COLUMN[self.shape]
        resolver = self.resolvers.get("", IdResolver(set()))
        created_col = CREATED_COLUMN[self.shape]
        separator = TEXT_SEPARATOR[self.shape]
        wanted = list(expected) + list(vector_targets)
        for batch in self.batches(f, wanted):
            n = batch.num_rows
            stats.rows += n
            for column, dtype in expected.items():
                if column not in batch.column_names:
                    batch = batch.append_column(column, pa.nulls(n, dtype))
            raw_ids = batch.column(id_col).to_pylist()
            created = batch.column(created_col).to_pylist()
            titles = batch.column("title").to_pylist()
            abstracts = batch.column("abstract").to_pylist()
            positions: list[int] = []
            ids: list[str] = []
            for i, raw in enumerate(raw_ids):
                canonical, kind = resolver.resolve(raw)
                if kind == "repaired_id":
                    self.defect(f, kind, canonical, f"from {raw}")
                elif kind is not None:
                    self.defect(f, kind, None if raw is None else str(raw), _id_detail(raw, kind))
                if canonical is None:
                    continue
                previous = self.seen_papers.get(canonical)
                if previous == file_no:
                    self.defect(f, "duplicate_id_in_file", canonical)
                elif previous is not None:
                    self.defect(
                        f,
                        "duplicate_id_across_files",
                        canonical,
                        f"also in {self.source.files[previous].rel}",
                    )
                self.seen_papers[canonical] = file_no
                if not _valid_date(created[i]):
                    self.defect(f, "null_created", canonical)
                positions.append(i)
                ids.append(canonical)
            texts = [f"{titles[i] or ''}{separator}{abstracts[i] or ''}" for i in positions]
            hashes = [_sha256(t) for t in texts]
            # Within a batch the last copy wins (across batches, delete + insert does it).
            last = {cid: k for k, cid in enumerate(ids)}
            keep = sorted(last.values())
            papers = batch.select(list(expected)).take(
                pa.array([positions[k] for k in keep], pa.int64())
            )
            papers = papers.append_column("arxiv_id", pa.array([ids[k] for k in keep], pa.string()))
            papers = papers.append_column(
                "embedded_text", pa.array([texts[k] for k in keep], pa.string())
            )
            if self.shape != "A":
                for k in keep:
                    self.text_index[ids[k]] = hashes[k]
            stats.papers_landed += papers.num_rows
            vector_writes = {}
            for alias, (target, vs) in vector_targets.items():
                column = batch.column(alias).take(pa.array(positions, pa.int64()))
                vs.rows += len(positions)
                vector_writes[target.name] = self.vectors(
                    f, target, vs, ids, hashes, check_vectors(column, target.dim), None
                )
            self.flush(f, papers, vector_writes)
            self.progress(f, n)

    def migrate_vector_file(self, file_no: int, f: LegacyFile) -> None:
        assert f.alias is not None
        target = self.targets[f.alias]
        columns = self.columns_of(f)
        vs = FileStats(f.rel, f.role, f.year, target.name, sha256=f.sha256, bytes=f.bytes)
        if "embedding" in columns:
            vs.vector_type = (
                vector_type_name(columns["embedding"])
                if is_vector_type(columns["embedding"])
                else str(columns["embedding"])
            )
        self.stats.append(vs)
        if not self.file_checks(f, columns, target.name) or not is_vector_type(
            columns["embedding"]
        ):
            if "embedding" in columns and not is_vector_type(columns["embedding"]):
                self.defect(
                    f,
                    "missing_column",
                    detail=f"embedding is {columns['embedding']}, not a float list",
                    model=target.name,
                )
            self.progress(f, f.rows or 0)
            self.flush(f, None, {})
            return
        id_col = "paper_id" if self.shape == "B" else "id"
        seen = self.seen_vectors[f.alias]
        resolver = self.resolvers.get(f.alias, IdResolver(set()))
        f16 = 0
        for batch in self.batches(f, [id_col, "embedding", "generated_at"]):
            n = batch.num_rows
            vs.rows += n
            positions: list[int] = []
            ids: list[str] = []
            hashes: list[str] = []
            for i, raw in enumerate(batch.column(id_col).to_pylist()):
                canonical, kind = resolver.resolve(raw)
                if kind == "repaired_id":
                    self.defect(f, kind, canonical, f"from {raw}", model=target.name)
                elif kind is not None:
                    self.defect(
                        f,
                        kind,
                        None if raw is None else str(raw),
                        _id_detail(raw, kind),
                        model=target.name,
                    )
                if canonical is None:
                    continue
                previous = seen.get(canonical)
                if previous == file_no:
                    self.defect(f, "duplicate_id_in_file", canonical, model=target.name)
                elif previous is not None:
                    self.defect(
                        f,
                        "duplicate_id_across_files",
                        canonical,
                        f"also in {self.source.files[previous].rel}",
                        model=target.name,
                    )
                seen[canonical] = file_no
                text_hash = self.text_index.get(canonical)
                if text_hash is None:
                    self.defect(
                        f, "unknown_id", canonical, "no metadata row for this id", model=target.name
                    )
                    continue
                positions.append(i)
                ids.append(canonical)
                hashes.append(text_hash)
            take = pa.array(positions, pa.int64())
            check = check_vectors(batch.column("embedding").take(take), target.dim)
            if check.float16:
                f16 += len(positions)
            generated = None
            if "generated_at" in batch.column_names:
                generated = batch.column("generated_at").take(take).cast(pa.string())
            writes = {target.name: self.vectors(f, target, vs, ids, hashes, check, generated)}
            self.flush(f, None, writes)
            self.progress(f, n)
        if f16:
            self.defect(
                f,
                "f16_vectors",
                detail="float16 vectors widened to float32",
                model=target.name,
                rows=f16,
            )
            self.flush(f, None, {})

    def vectors(
        self,
        f: LegacyFile,
        target: ModelTarget,
        stats: FileStats,
        ids: list[str],
        hashes: list[str],
        check: VectorCheck,
        generated: pa.Array | None,
    ) -> tuple[pa.Table, pa.Table]:
        """Decide, per paper of a batch, which vector to store and which to reject."""
        valid_seen = self.valid_vectors[target.alias]
        final: dict[str, tuple[bool, int]] = {}  # id → (valid?, row)
        nulls = 0
        for k, problem in enumerate(check.problems):
            cid = ids[k]
            if problem is None:
                final[cid] = (True, k)
            elif problem == "null":
                nulls += 1
            else:
                self.defect(f, problem, cid, check.details[k], model=target.name)
                if cid not in valid_seen and not final.get(cid, (False, 0))[0]:
                    final[cid] = (False, k)
        if nulls:
            self.defect(
                f,
                "null_vector",
                detail=f"{nulls} rows without a vector",
                model=target.name,
                rows=nulls,
            )
        matrix_row = {int(row): j for j, row in enumerate(check.valid_rows)}
        valid = sorted(k for ok, k in final.values() if ok)
        rejected = sorted(k for ok, k in final.values() if not ok)
        valid_seen.update(ids[k] for k in valid)
        stats.vectors_stored += len(valid)
        stats.vectors_rejected += len(rejected)
        matrix = (
            check.matrix[[matrix_row[k] for k in valid]]
            if valid
            else np.zeros((0, target.dim), np.float32)
        )
        embedded_at = (
            generated.take(pa.array(valid, pa.int64()))
            if generated is not None
            else pa.nulls(len(valid), pa.string())
        )
        vectors = pa.table(
            {
                "arxiv_id": pa.array([ids[k] for k in valid], pa.string()),
                "embedding": vectors_to_arrow(matrix),
                "text_sha256": pa.array([hashes[k] for k in valid], pa.string()),
                "embedded_at": embedded_at,
            }
        )
        rejects = pa.table(
            {
                "arxiv_id": pa.array([ids[k] for k in rejected], pa.string()),
                "text_sha256": pa.array([hashes[k] for k in rejected], pa.string()),
                "problem": pa.array([check.problems[k] for k in rejected], pa.string()),
                "detail": pa.array([check.details[k] for k in rejected], pa.string()),
            }
        )
        return vectors, rejects

    # -- writing -------------------------------------------------------------------------
    def flush(
        self, f: LegacyFile, papers: pa.Table | None, vectors: dict[str, tuple[pa.Table, pa.Table]]
    ) -> None:
        """Write one batch (metadata, vectors, rejects, defects) in one transaction."""
        defects, self._pending = self._pending, []
        con = self.con
        if con is None:
            return
        models = {t.name: t for t in self.targets.values()}

        def body() -> None:
            if papers is not None and papers.num_rows:
                con.register("_mig_papers", papers)
                con.execute(
                    "DELETE FROM lake.legacy_papers"
                    " WHERE arxiv_id IN (SELECT arxiv_id FROM _mig_papers)"
                )
                con.execute(
                    f"""INSERT INTO lake.legacy_papers
                    SELECT {_PAPER_SELECT[self.shape]}, embedded_text, ?, ?, now()
                    FROM _mig_papers""",
                    [f.rel, self.run_id],
                )
            for name, (valid, rejects) in vectors.items():
                table = lake.embeddings_table(name)
                if valid.num_rows:
                    con.register("_mig_vectors", valid)
                    con.execute(
                        f"DELETE FROM lake.{table}"
                        " WHERE arxiv_id IN (SELECT arxiv_id FROM _mig_vectors)"
                    )
                    con.execute(
                        f"""INSERT INTO lake.{table}
                        SELECT arxiv_id, embedding::FLOAT[], text_sha256, ?,
                               coalesce(try_cast(embedded_at AS TIMESTAMPTZ), ?::TIMESTAMPTZ)
                        FROM _mig_vectors""",
                        [models[name].model_id, self.started],
                    )
                touched = pa.concat_arrays(
                    [
                        valid.column("arxiv_id").combine_chunks(),
                        rejects.column("arxiv_id").combine_chunks(),
                    ]
                )
                if len(touched):
                    con.register("_mig_touched", pa.table({"arxiv_id": touched}))
                    con.execute(
                        """DELETE FROM lake.embedding_rejects WHERE source = 'legacy' AND model = ?
                           AND arxiv_id IN (SELECT arxiv_id FROM _mig_touched)""",
                        [name],
                    )
                if rejects.num_rows:
                    con.register("_mig_rejects", rejects)
                    con.execute(
                        """INSERT INTO lake.embedding_rejects
                           SELECT ?, arxiv_id, text_sha256, problem, 'legacy', detail, now()
                           FROM _mig_rejects""",
                        [name],
                    )
            if defects:
                cols = list(zip(*defects, strict=True))
                con.register(
                    "_mig_defects",
                    pa.table(
                        {
                            "file": pa.array(cols[0], pa.string()),
                            "year": pa.array(cols[1], pa.string()),
                            "kind": pa.array(cols[2], pa.string()),
                            "model": pa.array(cols[3], pa.string()),
                            "arxiv_id": pa.array(cols[4], pa.string()),
                            "detail": pa.array(cols[5], pa.string()),
                            "rows": pa.array(cols[6], pa.int64()),
                        }
                    ),
                )
                con.execute(
                    """INSERT INTO lake.migration_defects
                       SELECT ?, file, year, kind, model, arxiv_id, detail, rows, now()
                       FROM _mig_defects""",
                    [self.run_id],
                )

        try:
            lake.run_transaction(con, body)
        finally:
            for view in (
                "_mig_papers",
                "_mig_vectors",
                "_mig_touched",
                "_mig_rejects",
                "_mig_defects",
            ):
                with contextlib.suppress(duckdb.Error):
                    con.unregister(view)

    def run(self) -> None:
        self.prepass_ids()
        for file_no, f in enumerate(self.source.files):
            if f.role in ("combined", "metadata"):
                self.migrate_metadata_file(file_no, f)
        for alias, problem in self.source.manifest_problems.items():
            self._manifest_defect(alias, "missing_manifest", problem)
        for alias, manifest in self.source.manifests.items():
            self._check_manifest(alias, manifest)
        for file_no, f in enumerate(self.source.files):
            if f.role == "embeddings":
                self.migrate_vector_file(file_no, f)

    def _alias_file(self, alias: str) -> LegacyFile:
        folder = next(f for f in self.source.files if f.alias == alias)
        rel = folder.rel.rsplit("/", 1)[0] + "/manifest.json"
        return LegacyFile(
            path=self.source.root / rel,
            rel=rel,
            role="embeddings",
            year="",
            fmt="parquet",
            alias=alias,
        )

    def _manifest_defect(self, alias: str, kind: str, detail: str) -> None:
        if alias not in self.targets or not any(f.alias == alias for f in self.source.files):
            return
        f = self._alias_file(alias)
        self.defect(f, kind, detail=detail, model=self.targets[alias].name)
        self.flush(f, None, {})

    def _check_manifest(self, alias: str, manifest: dict[str, Any]) -> None:
        files = [f for f in self.source.files if f.alias == alias]
        actual = sum(f.rows or 0 for f in files)
        declared = manifest.get("total_rows")
        if declared is not None and declared != actual:
            self._manifest_defect(
                alias, "manifest_mismatch", f"total_rows {declared}, files hold {actual}"
            )


def _id_detail(raw: object, kind: str) -> str:
    if kind == "ambiguous_id":
        candidate, _ = classify_id(raw)
        return f"{raw} could be {candidate}, which is present undamaged"
    return "null id" if raw is None else f"not an arXiv id: {raw!r}"


def _vector_aliases(source: LegacySource, mapping: Mapping) -> dict[str, str]:
    """Legacy model aliases in the source → a file that holds them (for messages)."""
    aliases: dict[str, str] = {}
    if source.shape == "A":
        known = set(EXPECTED_COLUMNS["A"]) | {"date"}
        for f in source.files:
            schema = pq.read_schema(f.path)
            for name in schema.names:
                ours = mapping.columns.get(name, name)
                if ours not in known and is_vector_type(schema.field(name).type):
                    aliases.setdefault(ours, f.rel)
    else:
        for f in source.of_role("embeddings"):
            aliases.setdefault(f.alias or "embedding", f.rel)
    return aliases


def _check_dims(source: LegacySource, targets: dict[str, ModelTarget], mapping: Mapping) -> None:
    """A fixed-size column or a manifest of another dimension means the wrong model: stop."""
    for f in source.files:
        if f.fmt != "parquet":
            continue
        schema = pq.read_schema(f.path)
        for name in schema.names:
            alias = (
                f.alias
                if f.role == "embeddings" and name == "embedding"
                else mapping.columns.get(name, name)
            )
            target = targets.get(alias or "")
            dtype = schema.field(name).type
            if target and pa.types.is_fixed_size_list(dtype) and dtype.list_size != target.dim:
                raise UsageError(
                    f"{f.rel}: column {name} holds {dtype.list_size}-d vectors but model "
                    f"'{target.name}' has dim {target.dim}; map it to the right model with --model"
                )
    for alias, manifest in source.manifests.items():
        target = targets.get(alias)
        dim = manifest.get("dimension")
        if target and isinstance(dim, int) and dim != target.dim:
            raise UsageError(
                f"embeddings/{alias}/manifest.json says dimension {dim} but model "
                f"'{target.name}' has dim {target.dim}; map it to the right model with --model"
            )


def migrate_legacy(
    config: Config,
    source: str,
    *,
    dry_run: bool = False,
    mapping_file: Path | None = None,
    model_specs: list[str] | None = None,
    batch_size: int = 4096,
    on_progress: ProgressCallback | None = None,
) -> MigrationResult:
    """Import a legacy dataset (see the module docstring); ``dry_run`` reads and counts only."""
    started = time.monotonic()
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    mapping = load_mapping(mapping_file)
    root, display = resolve_source(source)
    legacy = detect(root, display, mapping)
    specs = {**mapping.models, **parse_model_specs(model_specs)}
    targets, run_config = resolve_models(config, _vector_aliases(legacy, mapping), specs)
    _check_dims(legacy, targets, mapping)
    for f in legacy.files:
        f.sha256 = sha256_file(f.path)
    run_id = None if dry_run else f"mig-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    con = None if dry_run else lake.connect(run_config)
    run = _Run(legacy, mapping, targets, con, run_id, batch_size, on_progress)
    try:
        if con is not None:
            lake.ensure_model_tables(con, run_config)
            lake.run_transaction(
                con,
                lambda: con.execute(
                    """INSERT INTO lake.migration_runs (run_id, source, shape, status, started_at,
                       manifest) VALUES (?, ?, ?, 'running', ?, ?)""",
                    [
                        run_id,
                        display,
                        legacy.shape,
                        run.started,
                        json.dumps(_manifest(legacy, targets, [], mapping)),
                    ],
                ),
            )
        status, error = "completed", None
        try:
            run.run()
        except BaseException as exc:
            status, error = "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if con is not None:
                # Best effort: the original error matters more than recording it.
                with contextlib.suppress(Exception):
                    _finish(con, run, legacy, targets, mapping, status, error)
            raise
        manifest = _manifest(legacy, targets, run.stats, mapping)
        result = MigrationResult(
            source=display,
            shape=legacy.shape,
            dry_run=dry_run,
            run_id=run_id,
            status=status,
            models=list(targets.values()),
            files=run.stats,
            issues=[
                IssueCount(
                    file, year, model, kind, count, run.examples.get((file, year, model, kind), [])
                )
                for (file, year, model, kind), count in run.counts.items()
            ],
            manifest=manifest,
        )
        if con is not None:
            _finish(con, run, legacy, targets, mapping, status, error)
        result.elapsed_s = time.monotonic() - started
        return result
    except duckdb.Error as exc:
        raise PapersysError(
            f"migration of {display} failed writing to the lake: {str(exc).splitlines()[0]}; "
            "committed batches are kept, rerun the same command to complete it"
        ) from None
    finally:
        if con is not None:
            con.close()


def _manifest(
    source: LegacySource, targets: dict[str, ModelTarget], stats: list[FileStats], mapping: Mapping
) -> dict[str, Any]:
    return {
        "source": source.display,
        "shape": source.shape,
        "files": [
            {
                "path": f.rel,
                "role": f.role,
                "year": f.year,
                "alias": f.alias,
                "rows": f.rows,
                "bytes": f.bytes,
                "sha256": f.sha256,
            }
            for f in source.files
        ],
        "models": {
            a: {"name": t.name, "model_id": t.model_id, "dim": t.dim} for a, t in targets.items()
        },
        "vector_types": sorted({s.vector_type for s in stats if s.vector_type}),
        "legacy_manifests": source.manifests,
        "mapping": {"columns": mapping.columns, "models": mapping.models},
    }


def _finish(
    con: duckdb.DuckDBPyConnection,
    run: _Run,
    source: LegacySource,
    targets: dict[str, ModelTarget],
    mapping: Mapping,
    status: str,
    error: str | None,
) -> None:
    """Record per-file figures and close the run row."""
    manifest = json.dumps(_manifest(source, targets, run.stats, mapping), default=str)

    def body() -> None:
        if run.stats:
            rows = [
                (
                    s.file,
                    s.role,
                    s.year,
                    s.model,
                    s.rows,
                    s.papers_landed,
                    s.vectors_stored,
                    s.vectors_rejected,
                    s.sha256,
                    s.bytes,
                    s.vector_type,
                )
                for s in run.stats
            ]
            con.executemany(
                "INSERT INTO lake.migration_files VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [(run.run_id, *row) for row in rows],
            )
        con.execute(
            """UPDATE lake.migration_runs SET status = ?, finished_at = now(), manifest = ?,
               error = ? WHERE run_id = ?""",
            [status, manifest, error, run.run_id],
        )

    lake.run_transaction(con, body)
