"""The lake: DuckDB + DuckLake, extensions installed offline, versioned schema migrations.

``connect(config)`` is the one way into the lake. It opens an in-memory DuckDB, loads the
extensions it needs from the pinned ``duckdb-extension-*`` PyPI packages (falling back to
DuckDB's repository when online), attaches the lake as ``lake`` and brings its schema up to
date. Every write goes through ``transaction`` / ``run_transaction`` so it commits whole or
not at all.
"""

from __future__ import annotations

import importlib
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import psutil

from papersys.config import Config, LakeConfig, check_model_name
from papersys.errors import LakeError

LAKE_ALIAS = "lake"
T = TypeVar("T")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


# Append-only: never edit an applied migration, add a new version instead.
# Version ranges by stage: 1-9 core/ingestion, 10-19 embedding, 20-29 migration, 30-39 operations.
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "raw records and harvests",
        (
            """CREATE TABLE IF NOT EXISTS raw_records (
                arxiv_id VARCHAR NOT NULL,
                datestamp DATE,
                set_specs VARCHAR[],
                deleted BOOLEAN NOT NULL,
                metadata_prefix VARCHAR,
                payload_xml VARCHAR,
                source VARCHAR NOT NULL,
                harvest_id VARCHAR,
                landed_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS harvests (
                harvest_id VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                endpoint VARCHAR,
                metadata_prefix VARCHAR,
                set_spec VARCHAR,
                from_date DATE,
                until_date DATE,
                status VARCHAR NOT NULL,
                resumption_token VARCHAR,
                pages INTEGER NOT NULL,
                records BIGINT NOT NULL,
                deleted_records BIGINT NOT NULL,
                complete_list_size BIGINT,
                first_response_date TIMESTAMP WITH TIME ZONE,
                last_response_date TIMESTAMP WITH TIME ZONE,
                started_at TIMESTAMP WITH TIME ZONE NOT NULL,
                updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
                finished_at TIMESTAMP WITH TIME ZONE,
                error VARCHAR
            )""",
        ),
    ),
    Migration(
        2,
        "embedding registry, rejected vectors, legacy papers",
        (
            # One row per configured model; embeddings_<name> tables are created from it.
            """CREATE TABLE IF NOT EXISTS embedding_models (
                name VARCHAR NOT NULL,
                model_id VARCHAR NOT NULL,
                dim INTEGER NOT NULL,
                backend VARCHAR NOT NULL,
                registered_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
            # Vectors that failed validation (NaN, zero, wrong dim, ...): never stored in
            # embeddings_<model>; missing_embeddings reports these papers with reason 'invalid'.
            """CREATE TABLE IF NOT EXISTS embedding_rejects (
                model VARCHAR NOT NULL,
                arxiv_id VARCHAR NOT NULL,
                text_sha256 VARCHAR,
                problem VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                detail VARCHAR,
                recorded_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
            # Paper metadata from legacy datasets; dbt unions it under OAI records (OAI wins).
            """CREATE TABLE IF NOT EXISTS legacy_papers (
                arxiv_id VARCHAR NOT NULL,
                title VARCHAR,
                abstract VARCHAR,
                authors VARCHAR[],
                categories VARCHAR[],
                primary_category VARCHAR,
                submitted_at DATE,
                updated_at DATE,
                doi VARCHAR,
                journal_ref VARCHAR,
                comments VARCHAR,
                license VARCHAR,
                embedded_text VARCHAR,
                source_file VARCHAR,
                migration_run_id VARCHAR,
                landed_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
        ),
    ),
    Migration(
        3,
        "harvest page log and window restarts",
        (
            # One row per landed page, written in the page's own transaction.
            """CREATE TABLE IF NOT EXISTS harvest_pages (
                harvest_id VARCHAR NOT NULL,
                page_no INTEGER NOT NULL,
                resumption_token VARCHAR,
                records INTEGER NOT NULL,
                deleted_records INTEGER NOT NULL,
                skipped_records INTEGER NOT NULL,
                response_date TIMESTAMP WITH TIME ZONE,
                landed_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
            # Times the window was restarted after a rejected resumptionToken; while > 0,
            # records this harvest already landed are skipped.
            "ALTER TABLE harvests ADD COLUMN IF NOT EXISTS restarts INTEGER DEFAULT 0",
        ),
    ),
    Migration(
        10,
        "embedding leases",
        (
            # One row per model while embed-gaps runs for it: taking the lease UPDATEs the
            # model's row (two takers conflict at commit), every chunk renews it in the chunk's
            # own transaction, so a run that lost its lease can never write.
            """CREATE TABLE IF NOT EXISTS embedding_leases (
                model VARCHAR NOT NULL,
                holder VARCHAR,
                host VARCHAR,
                pid INTEGER,
                acquired_at TIMESTAMP WITH TIME ZONE,
                renewed_at TIMESTAMP WITH TIME ZONE,
                expires_at TIMESTAMP WITH TIME ZONE
            )""",
        ),
    ),
    Migration(
        20,
        "legacy migration runs, files and defects",
        (
            # One row per `papersys migrate legacy` run; manifest = JSON of the source's files
            # (path, role, year, rows, bytes, sha256), models and mapping.
            """CREATE TABLE IF NOT EXISTS migration_runs (
                run_id VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                shape VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                started_at TIMESTAMP WITH TIME ZONE NOT NULL,
                finished_at TIMESTAMP WITH TIME ZONE,
                manifest VARCHAR,
                error VARCHAR
            )""",
            # What each file contributed: one row for its metadata (model NULL) and one per
            # model for its vectors.
            """CREATE TABLE IF NOT EXISTS migration_files (
                run_id VARCHAR NOT NULL,
                file VARCHAR NOT NULL,
                role VARCHAR NOT NULL,
                year VARCHAR NOT NULL,
                model VARCHAR,
                rows BIGINT NOT NULL,
                papers_landed BIGINT NOT NULL,
                vectors_stored BIGINT NOT NULL,
                vectors_rejected BIGINT NOT NULL,
                sha256 VARCHAR,
                bytes BIGINT,
                vector_type VARCHAR,
                recorded_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
            # Every defect found: one row per affected row (rows = 1), or one row per file
            # for file-level findings (rows = how many rows it covers).
            """CREATE TABLE IF NOT EXISTS migration_defects (
                run_id VARCHAR NOT NULL,
                file VARCHAR NOT NULL,
                year VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                model VARCHAR,
                arxiv_id VARCHAR,
                detail VARCHAR,
                rows BIGINT NOT NULL,
                recorded_at TIMESTAMP WITH TIME ZONE NOT NULL
            )""",
        ),
    ),
    Migration(
        30,
        "scheduler job runs and job leases",
        (
            # One row per attempt, appended when the attempt ends (append-only: no update
            # conflicts between processes; a running job shows up in job_leases).
            """CREATE TABLE IF NOT EXISTS job_runs (
                run_id VARCHAR NOT NULL,
                job VARCHAR NOT NULL,
                trigger VARCHAR NOT NULL,
                attempt INTEGER NOT NULL,
                status VARCHAR NOT NULL,
                started_at TIMESTAMP WITH TIME ZONE NOT NULL,
                finished_at TIMESTAMP WITH TIME ZONE NOT NULL,
                duration_s DOUBLE NOT NULL,
                host VARCHAR,
                pid INTEGER,
                error VARCHAR,
                detail VARCHAR
            )""",
            # At most one holder per job: taking a lease UPDATEs the job's row, so two
            # processes taking it at once conflict at commit and only one wins.
            """CREATE TABLE IF NOT EXISTS job_leases (
                job VARCHAR NOT NULL,
                holder VARCHAR,
                host VARCHAR,
                pid INTEGER,
                acquired_at TIMESTAMP WITH TIME ZONE,
                renewed_at TIMESTAMP WITH TIME ZONE,
                expires_at TIMESTAMP WITH TIME ZONE
            )""",
            # Seeded here so that the first takers race on an UPDATE, not on an INSERT.
            """INSERT INTO job_leases (job) VALUES
                ('ingest'), ('transform'), ('embed'), ('embedding_backfill'), ('maintain')""",
        ),
    ),
]

# Extensions by the PyPI package that carries them (duckdb-extension-<name>).
_PACKAGED_EXTENSIONS = {
    "ducklake": "duckdb_extension_ducklake",
    "sqlite_scanner": "duckdb_extension_sqlite_scanner",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
}


def _packaged_extension_file(name: str) -> Path | None:
    module_name = _PACKAGED_EXTENSIONS.get(name)
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    version = duckdb.__version__
    for base in module.__path__:
        candidate = Path(base) / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if candidate.is_file():
            return candidate
        # A package built for another DuckDB version would not load; say so below.
    return None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD an extension, installing it from its PyPI package first if needed (no network)."""
    try:
        con.execute(f"LOAD {name}")
        return
    except duckdb.Error:
        pass
    packaged = _packaged_extension_file(name)
    try:
        if packaged is not None:
            con.execute(f"INSTALL '{_sql_str(str(packaged))}'")
        else:
            con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        package = "duckdb-extension-" + name.replace("_", "-")
        raise LakeError(
            f"cannot load DuckDB extension '{name}': {_first_line(exc)}; "
            f"install the package: pip install '{package}=={duckdb.__version__}'"
        ) from None


def prepare_connection(con: duckdb.DuckDBPyConnection, lake: LakeConfig) -> None:
    """Load the extensions this lake needs and attach it as ``lake``. Safe to call twice."""
    con.execute("SET autoinstall_known_extensions = false")
    # DuckDB draws its own progress bar on stdout for queries over 2 s: it would corrupt
    # `status --json` and `metrics` output (papersys renders progress itself).
    con.execute("SET enable_progress_bar = false")
    catalog = lake.catalog_uri
    load_extension(con, "ducklake")
    if catalog.startswith("ducklake:sqlite:"):
        load_extension(con, "sqlite_scanner")
        _make_dir(Path(catalog.removeprefix("ducklake:sqlite:")).parent)
    elif catalog.startswith(("ducklake:postgres:", "ducklake:postgresql:")):
        load_extension(con, "postgres_scanner")
    data = lake.data_uri
    if "://" in data:
        if not data.startswith("file://"):
            load_extension(con, "httpfs")
    else:
        _make_dir(Path(data))
    attached = {
        row[0] for row in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
    }
    if LAKE_ALIAS in attached:
        return
    attach = f"ATTACH '{_sql_str(catalog)}' AS {LAKE_ALIAS} (DATA_PATH '{_sql_str(data)}')"
    try:
        # Processes opening a new SQLite-catalog lake at once race to create DuckLake's
        # metadata tables; the losers see "database is locked" until the winner commits.
        retry_while_locked(lambda: con.execute(attach))
    except duckdb.Error as exc:
        raise LakeError(
            f"cannot open the lake at {catalog} (data {data}): {_first_line(exc)}; "
            "check [lake] in the config or PAPERSYS_LAKE_ROOT"
        ) from None


def retry_while_locked(action: Callable[[], T], *, retries: int = 12) -> T:
    """Run ``action``, retrying (about 13 s of backoff in all) while the catalog is locked.

    A SQLite catalog does not wait for another process's write: a read during it fails with
    "database is locked" at once. Outside a transaction the action is simply repeated.
    """
    for attempt in range(retries):
        try:
            return action()
        except duckdb.Error as exc:
            if not is_conflict(exc):
                raise
            time.sleep(0.05 * (2 ** min(attempt, 5)) * (0.5 + random.random()))
    return action()


def connect(config: Config, *, migrate: bool = True) -> duckdb.DuckDBPyConnection:
    """Open DuckDB with the lake attached as ``lake`` (and in use), schema up to date."""
    con = duckdb.connect(":memory:")
    try:
        prepare_connection(con, config.lake)
        retry_while_locked(lambda: con.execute(f"USE {LAKE_ALIAS}"))
        if migrate:
            apply_migrations(con)
    except BaseException:
        con.close()
        raise
    return con


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    if not table_exists(con, "schema_migrations"):
        return 0
    row = con.execute(
        f"SELECT coalesce(max(version), 0) FROM {LAKE_ALIAS}.schema_migrations"
    ).fetchone()
    return int(row[0]) if row else 0


def apply_migrations(
    con: duckdb.DuckDBPyConnection, migrations: list[Migration] | None = None
) -> int:
    """Apply pending migrations, each in its own transaction; return the resulting version.

    Several processes may open a new lake at once: a commit conflict means another one got
    there first, so re-read the version and carry on.
    """
    pending_list = sorted(migrations or MIGRATIONS, key=lambda m: m.version)

    def step() -> int:
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {LAKE_ALIAS}.schema_migrations (
                version INTEGER NOT NULL, name VARCHAR NOT NULL,
                applied_at TIMESTAMP WITH TIME ZONE NOT NULL)"""
        )
        return schema_version(con)

    current = run_transaction(con, step)
    for migration in pending_list:
        if migration.version <= current:
            continue

        def apply(m: Migration = migration) -> int:
            version = schema_version(con)
            if version >= m.version:
                return version
            for statement in m.statements:
                con.execute(statement.replace("{lake}", LAKE_ALIAS))
            con.execute(
                f"INSERT INTO {LAKE_ALIAS}.schema_migrations VALUES (?, ?, now())",
                [m.version, m.name],
            )
            return m.version

        current = run_transaction(con, apply)
    return current


def is_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "conflict" in text or "database is locked" in text or "busy" in text


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, rolled back on any error (including KeyboardInterrupt)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        with suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def run_transaction(
    con: duckdb.DuckDBPyConnection,
    body: Callable[[], T],
    *,
    retries: int = 8,
    base_delay: float = 0.05,
) -> T:
    """Run ``body`` in a transaction; on a commit conflict with another writer, retry it."""
    attempt = 0
    while True:
        try:
            with transaction(con):
                return body()
        except duckdb.Error as exc:
            if not is_conflict(exc) or attempt >= retries:
                raise
            attempt += 1
            time.sleep(base_delay * (2**attempt) * (0.5 + random.random()))


def embeddings_table(name: str) -> str:
    """Table name for a model's vectors; the name is validated before it reaches SQL."""
    return f"embeddings_{check_model_name(name)}"


def ensure_model_tables(con: duckdb.DuckDBPyConnection, config: Config) -> list[str]:
    """Register every configured model and create its ``embeddings_<name>`` table.

    DuckLake has no fixed-size ARRAY type, so vectors are ``FLOAT[]`` lists whose length is
    checked on every write (and recorded in ``embedding_models.dim``); cast to ``FLOAT[dim]``
    when reading if a fixed-size array is needed.

    A model whose registered dimension differs from the config is an error: its stored
    vectors would no longer match (rename the model to start a new table).
    """
    created: list[str] = []

    def body() -> None:
        registered = {
            name: dim
            for name, dim in con.execute(
                f"SELECT name, dim FROM {LAKE_ALIAS}.embedding_models"
            ).fetchall()
        }
        for name, model in config.embedding.models.items():
            table = embeddings_table(name)
            if name in registered and registered[name] != model.dim:
                raise LakeError(
                    f"model '{name}' is registered with dim {registered[name]} but the config "
                    f"says {model.dim}; use a new model name for a different model"
                )
            if name not in registered:
                con.execute(
                    f"INSERT INTO {LAKE_ALIAS}.embedding_models VALUES (?, ?, ?, ?, now())",
                    [name, model.model, model.dim, model.backend],
                )
            if not table_exists(con, table):
                con.execute(
                    f"""CREATE TABLE IF NOT EXISTS {LAKE_ALIAS}.{table} (
                        arxiv_id VARCHAR NOT NULL,
                        embedding FLOAT[] NOT NULL,
                        text_sha256 VARCHAR NOT NULL,
                        model_id VARCHAR NOT NULL,
                        embedded_at TIMESTAMP WITH TIME ZONE NOT NULL
                    )"""
                )
                created.append(table)

    run_transaction(con, body)
    return created


def table_exists(con: duckdb.DuckDBPyConnection, name: str, database: str = LAKE_ALIAS) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
        [database, name],
    ).fetchone()
    if row and row[0]:
        return True
    row = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE database_name = ? AND view_name = ?",
        [database, name],
    ).fetchone()
    return bool(row and row[0])


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LakeError(
            f"cannot create lake directory {path}: {exc.strerror}; "
            "set [lake].root or PAPERSYS_LAKE_ROOT to a writable place"
        ) from None


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- lease holders (embedding_leases, job_leases) ---


def new_lease_holder() -> tuple[str, str, int]:
    """A unique holder id for a lease (embedding model, scheduler job), with host and pid."""
    host = socket.gethostname()
    pid = os.getpid()
    return f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid


def lease_holder_alive(host: str | None, pid: int | None) -> bool:
    """A holder on this host whose process is gone is dead now, whatever its expiry says."""
    if host != socket.gethostname() or pid is None:
        return True
    if not psutil.pid_exists(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
