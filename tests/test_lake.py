from __future__ import annotations

import multiprocessing
from pathlib import Path

import duckdb
import pytest

from papersys import lake
from papersys.config import Config, load_config


def test_connect_creates_lake_and_applies_migrations(con, lake_root: Path) -> None:
    assert (lake_root / "catalog.sqlite").is_file()
    assert lake.schema_version(con) == max(m.version for m in lake.MIGRATIONS)
    assert lake.table_exists(con, "raw_records")
    assert lake.table_exists(con, "harvests")
    loaded = {
        r[0]
        for r in con.execute(
            "SELECT extension_name FROM duckdb_extensions() WHERE loaded"
        ).fetchall()
    }
    assert {"ducklake", "sqlite_scanner"} <= loaded


def test_migrations_are_idempotent_and_recorded_once(config: Config) -> None:
    for _ in range(3):
        c = lake.connect(config)
        c.close()
    c = lake.connect(config)
    rows = c.execute("SELECT version, count(*) FROM schema_migrations GROUP BY 1").fetchall()
    assert all(n == 1 for _, n in rows)
    c.close()


def test_new_migration_applies_on_reopen(config: Config) -> None:
    c = lake.connect(config)
    extra = [
        *lake.MIGRATIONS,
        lake.Migration(999, "test extra", ("CREATE TABLE lake.extra_t (x INT)",)),
    ]
    assert lake.apply_migrations(c, extra) == 999
    assert lake.table_exists(c, "extra_t")
    assert lake.apply_migrations(c, extra) == 999
    c.close()


def _open_and_close(root: str) -> int:
    import os

    os.environ["PAPERSYS_LAKE_ROOT"] = root
    c = lake.connect(load_config())
    version = lake.schema_version(c)
    c.close()
    return version


def test_concurrent_first_open_of_a_new_lake(tmp_path: Path) -> None:
    root = str(tmp_path / "shared_lake")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        versions = pool.map(_open_and_close, [root] * 3)
    expected = max(m.version for m in lake.MIGRATIONS)
    assert versions == [expected] * 3
    c = duckdb.connect()
    lake.prepare_connection(c, load_config(overrides={"lake.root": root}).lake)
    n = c.execute("SELECT count(*) FROM lake.schema_migrations WHERE version = 1").fetchone()[0]
    assert n == 1


def test_concurrent_first_opens_never_fail_on_the_locked_catalog(tmp_path: Path) -> None:
    # Racing to create DuckLake's metadata in a new SQLite catalog: the losers retry.
    ctx = multiprocessing.get_context("spawn")
    expected = max(m.version for m in lake.MIGRATIONS)
    with ctx.Pool(4) as pool:
        for i in range(3):
            root = str(tmp_path / f"lake{i}")
            assert pool.map(_open_and_close, [root] * 4) == [expected] * 4


def test_duckdb_never_draws_its_progress_bar(con) -> None:
    # It would land on stdout, in the middle of `status --json` or `metrics` output.
    setting = "SELECT value FROM duckdb_settings() WHERE name = 'enable_progress_bar'"
    assert con.execute(setting).fetchone()[0] == "false"


def test_transaction_rolls_back_on_error(con) -> None:
    with pytest.raises(RuntimeError), lake.transaction(con):
        con.execute(
            "INSERT INTO raw_records VALUES "
            "('x', NULL, [], false, 'arXivRaw', '<x/>', 'oai', 'h', now())"
        )
        raise RuntimeError("boom")
    assert con.execute("SELECT count(*) FROM raw_records").fetchone()[0] == 0


def test_unreachable_catalog_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    from papersys.errors import LakeError

    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    monkeypatch.setenv("PAPERSYS_LAKE_ROOT", str(blocker / "lake"))
    with pytest.raises(LakeError, match="cannot create lake directory"):
        lake.connect(load_config())


def test_model_tables_follow_the_config(con, config: Config) -> None:
    assert lake.ensure_model_tables(con, config) == ["embeddings_minilm"]
    assert lake.ensure_model_tables(con, config) == []
    col = con.execute(
        "SELECT data_type FROM duckdb_columns() WHERE database_name='lake' "
        "AND table_name='embeddings_minilm' AND column_name='embedding'"
    ).fetchone()[0]
    assert col == "FLOAT[]"
    dim = con.execute("SELECT dim FROM embedding_models WHERE name='minilm'").fetchone()[0]
    assert dim == 384
    changed = load_config(overrides={"embedding.models.minilm": {"model": "x", "dim": 8}})
    from papersys.errors import LakeError

    with pytest.raises(LakeError, match="registered with dim 384"):
        lake.ensure_model_tables(con, changed)
