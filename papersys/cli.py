"""Command-line interface: a thin Typer layer that parses options, calls the library, renders.

Exit codes: 0 ok, 1 failure, 2 usage error. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from papersys import __version__
from papersys.config import Config, load_config, render_toml
from papersys.errors import PapersysError

console = Console()
err_console = Console(stderr=True)


class _Group(TyperGroup):
    """Turns library errors into one clear line and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PapersysError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_Group,
    name="papersys",
    help="A DuckLake lakehouse of arXiv metadata and one embedding per paper per model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(cls=_Group, help="Check or show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config TOML (default: $PAPERSYS_CONFIG, then ./papersys.toml, else defaults).",
        envvar="PAPERSYS_CONFIG",
        show_envvar=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"papersys {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: ConfigOption = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """papersys: harvest arXiv, transform with dbt, fill embedding gaps, operate the lake."""
    ctx.obj = {"config_path": config}


def get_config(ctx: typer.Context) -> Config:
    """The validated configuration for this invocation (loaded once)."""
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if "config" not in obj:
        obj["config"] = load_config(obj.get("config_path"))
        root.obj = obj
    return obj["config"]


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration and say which file and lake it points to."""
    config = get_config(ctx)
    source = str(config.source) if config.source else "built-in defaults (no config file)"
    console.print(f"[green]ok[/] {source}")
    console.print(f"lake catalog: {config.lake.catalog_uri}")
    console.print(f"lake data:    {config.lake.data_uri}")
    models = ", ".join(f"{n} ({m.model}, {m.dim}-d)" for n, m in config.embedding.models.items())
    console.print(f"models:       {models or 'none'}")


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the effective configuration (defaults filled in)."""
    config = get_config(ctx)
    if as_json:
        console.print_json(json.dumps(config.model_dump(mode="json")))
    else:
        console.print(render_toml(config), highlight=False, markup=False, end="")


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show harvests, raw record counts and the last harvest cursor."""
    from papersys.status import collect_status

    report = collect_status(get_config(ctx))
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    console.print(
        f"[bold]lake[/] {report['lake']['catalog']}  schema v{report['lake']['schema_version']}"
    )
    raw = Table(title="raw records", title_justify="left")
    for col in ("source", "records", "papers", "deleted", "latest datestamp"):
        raw.add_column(col, justify="right" if col != "source" else "left")
    for row in report["raw_records"]:
        raw.add_row(
            row["source"],
            f"{row['records']:,}",
            f"{row['papers']:,}",
            f"{row['deleted']:,}",
            str(row["latest_datestamp"] or "-"),
        )
    console.print(raw)
    harvests = Table(title="recent harvests", title_justify="left")
    for col in (
        "harvest",
        "source",
        "status",
        "window",
        "pages",
        "records",
        "last response",
        "cursor",
    ):
        harvests.add_column(col)
    for h in report["harvests"]:
        window = f"{h['from_date'] or '…'} → {h['until_date'] or '…'}"
        harvests.add_row(
            h["harvest_id"],
            h["source"],
            h["status"],
            window,
            str(h["pages"]),
            f"{h['records']:,}",
            str(h["last_response_date"] or "-"),
            h["resumption_token"] or "-",
        )
    console.print(harvests)


# --- ingest (papersys/ingestion) ---


# --- transform (papersys/transform.py) ---


# --- embed-gaps (papersys/embedding) ---


# --- migrate (papersys/migration) ---


# --- operate: schedule, export, snapshots, rollback, maintain, demo ---


def main() -> None:
    app()
