"""A real, throwaway PostgreSQL server for tests (the multi-machine DuckLake catalog).

``PostgresServer`` runs ``initdb`` + ``pg_ctl start`` in a fresh temp directory, listening on
127.0.0.1 on a free port (socket in the same directory), with trust authentication, and
stops and deletes it on ``stop()``. initdb refuses to run as root, so as root the server runs
as the ``postgres`` OS user. Missing binaries fail with a clear message: set ``PG_BIN`` to
the directory holding initdb/pg_ctl (CI installs PostgreSQL 15).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

DEFAULT_BIN_DIRS = [
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/bin",
    "/usr/local/bin",
    "/usr/bin",
]


def find_bin_dir() -> Path:
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else DEFAULT_BIN_DIRS
    for directory in candidates:
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory)
    which = shutil.which("initdb")
    if which and shutil.which("pg_ctl"):
        return Path(which).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in "
        f"{', '.join(candidates)}; install PostgreSQL (e.g. apt-get install postgresql-15) "
        "or set PG_BIN to their directory",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, dbname: str = "papersys") -> None:
        self.bin_dir = find_bin_dir()
        self.dbname = dbname
        self.user = "postgres"
        self.port = _free_port()
        self.base = Path(tempfile.mkdtemp(prefix="papersys-pg-"))
        self.data_dir = self.base / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(
                    "running as root and there is no 'postgres' OS user to run initdb as; "
                    "create one (useradd postgres) or run the tests as a normal user",
                    pytrace=False,
                )
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def start(self) -> PostgresServer:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.base} -c fsync=off "
            "-c max_connections=100 -c shared_buffers=32MB"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        createdb = self.bin_dir / "createdb"
        self._run(
            str(createdb), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.dbname
        )
        return self

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def libpq(self) -> str:
        """Connection string in libpq keyword form (what DuckLake's postgres catalog takes)."""
        return f"dbname={self.dbname} host=127.0.0.1 port={self.port} user={self.user}"

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
