"""Transform: run the dbt project (``dbt_project/``) programmatically on the lake.

``run_build(config)`` registers the configured embedding models (so ``missing_embeddings`` and
``embedding_coverage`` cover every one of them), then runs ``dbt build`` in-process with the
repository's ``profiles.yml``. The dbt-duckdb plugin ``papersys.dbt_plugin`` attaches the same
lake papersys uses (this config, not a second lookup), with the extensions loaded offline.

dbt's own console output is silenced (library code never prints); progress comes through the
``on_node`` callback and the outcome as a ``TransformResult``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from papersys import lake
from papersys.config import Config
from papersys.errors import PapersysError, UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_ENV = "PAPERSYS_DBT_PROJECT"
COMMANDS = ("build", "run", "test", "compile", "docs generate")


@dataclass(frozen=True)
class NodeResult:
    name: str
    resource_type: str
    status: str
    seconds: float
    message: str | None = None


@dataclass
class TransformResult:
    command: str
    ok: bool
    seconds: float
    nodes: list[NodeResult] = field(default_factory=list)
    models_registered: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in {"error", "fail", "runtime error"}]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            out[node.status] = out.get(node.status, 0) + 1
        return out


def dbt_project_dir() -> Path:
    """The dbt project: $PAPERSYS_DBT_PROJECT, else ``dbt_project/`` next to the package."""
    configured = os.environ.get(DBT_PROJECT_ENV)
    project = Path(configured) if configured else REPO_ROOT / "dbt_project"
    if not (project / "dbt_project.yml").is_file():
        raise PapersysError(
            f"no dbt project at {project} (dbt_project.yml missing); run from a papersys "
            f"checkout or set {DBT_PROJECT_ENV}"
        )
    return project


def profiles_dir(project: Path) -> Path:
    """profiles.yml at the repository root (the project's parent), else in the project."""
    for candidate in (project.parent, project):
        if (candidate / "profiles.yml").is_file():
            return candidate
    raise PapersysError(f"no profiles.yml next to {project}; restore it from the repository")


@contextmanager
def _lake_for_dbt(config: Config) -> Iterator[None]:
    """Point the dbt profile and plugin at this config's lake for the duration of a run."""
    from papersys import dbt_plugin

    saved = os.environ.get("PAPERSYS_LAKE_ROOT")
    # profiles.yml declares the attachment with this path (only so dbt-duckdb knows `lake` is
    # DuckLake); the plugin attaches the real catalog from `config` first.
    os.environ["PAPERSYS_LAKE_ROOT"] = str(Path(config.lake.root).resolve())
    previous = dbt_plugin.set_config(config)
    try:
        yield
    finally:
        dbt_plugin.set_config(previous)
        if saved is None:
            os.environ.pop("PAPERSYS_LAKE_ROOT", None)
        else:
            os.environ["PAPERSYS_LAKE_ROOT"] = saved


def register_models(config: Config) -> list[str]:
    """Register every configured model and create its embeddings table; return their names."""
    con = lake.connect(config)
    try:
        lake.ensure_model_tables(con, config)
    finally:
        con.close()
    return sorted(config.embedding.models)


def run_build(
    config: Config,
    *,
    command: str = "build",
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    full_refresh: bool = False,
    dbt_vars: dict[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    on_node: Callable[[str, str], None] | None = None,
    raise_on_failure: bool = True,
) -> TransformResult:
    """Run ``dbt <command>`` on the lake and return what happened to every node.

    ``on_node(name, status)`` is called as nodes start ("started") and finish. With
    ``raise_on_failure`` a failing model or data test raises PapersysError (after the run).
    """
    if command not in COMMANDS:
        raise UsageError(f"unknown dbt command '{command}'; use one of: {', '.join(COMMANDS)}")
    project = dbt_project_dir()
    registered = register_models(config)
    args = [*command.split(), "--project-dir", str(project)]
    args += ["--profiles-dir", str(profiles_dir(project))]
    # Console logging off (the caller renders); dbt still writes dbt_project/logs/dbt.log.
    args += ["--log-level", "none"]
    for selector in select:
        args += ["--select", selector]
    for selector in exclude:
        args += ["--exclude", selector]
    if full_refresh and command in {"build", "run"}:
        args.append("--full-refresh")
    if dbt_vars:
        import json

        args += ["--vars", json.dumps(dbt_vars)]
    args += list(extra_args)

    from dbt.cli.main import dbtRunner

    callbacks = [_node_callback(on_node)] if on_node else []
    started = time.perf_counter()
    with _lake_for_dbt(config):
        try:
            outcome = dbtRunner(callbacks=callbacks).invoke(args)
        finally:
            _close_dbt_connection()
    seconds = time.perf_counter() - started
    nodes = _node_results(outcome.result)
    result = TransformResult(
        command=command,
        ok=bool(outcome.success),
        seconds=seconds,
        nodes=nodes,
        models_registered=registered,
    )
    if outcome.exception is not None:
        raise PapersysError(f"dbt {command} failed: {_first_line(outcome.exception)}")
    if raise_on_failure and not result.ok:
        failed = result.failed
        detail = "; ".join(f"{n.name}: {_first_line(n.message or n.status)}" for n in failed[:3])
        more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
        raise PapersysError(
            f"dbt {command} failed on {len(failed)} node(s): {detail or 'see dbt logs'}{more}; "
            f"details in {project / 'logs' / 'dbt.log'}"
        )
    return result


def _close_dbt_connection() -> None:
    """Close the DuckDB connection dbt-duckdb keeps per process after a run.

    Left open it would keep the lake attached (holding catalog locks other writers wait on) and
    be reused by the next run even if that one is for another config with the same profile.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if env is not None:
            with suppress(Exception):
                env.close()


def _node_callback(on_node: Callable[[str, str], None]) -> Callable[[Any], None]:
    def callback(event: Any) -> None:
        name = event.info.name
        if name not in {"NodeStart", "NodeFinished"}:
            return
        info = getattr(event.data, "node_info", None)
        if info is None:
            return
        status = "started" if name == "NodeStart" else str(info.node_status or "done")
        on_node(info.node_name, status)

    return callback


def _node_results(result: Any) -> list[NodeResult]:
    nodes: list[NodeResult] = []
    for item in getattr(result, "results", None) or []:
        node = getattr(item, "node", None)
        if node is None:
            continue
        status = getattr(item.status, "value", str(item.status))
        nodes.append(
            NodeResult(
                name=node.name,
                resource_type=str(getattr(node.resource_type, "value", node.resource_type)),
                status=str(status),
                seconds=float(getattr(item, "execution_time", 0.0) or 0.0),
                message=getattr(item, "message", None),
            )
        )
    return nodes


def _first_line(value: object, limit: int = 400) -> str:
    """dbt messages span lines ("Database Error in model x" then the cause): one line of both."""
    text = " ".join(str(value).split())
    text = text or type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
