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


def _harvest_progress(progress: Any, tasks: dict[str | None, Any]) -> Any:
    """An ``on_page`` callback that drives one rich progress task per set."""

    def on_page(p: Any) -> None:
        label = p.set_spec or "all"
        if p.set_spec not in tasks:
            tasks[p.set_spec] = progress.add_task(label, total=None, records=0)
        task = tasks[p.set_spec]
        if p.complete_list_size and p.list_position is not None:
            progress.update(task, total=p.complete_list_size, completed=p.list_position)
        else:
            progress.update(task, advance=p.page_records)
        progress.update(task, records=p.records, pages=p.page_no)

    return on_page


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="OAI set, e.g. cs, cs:cs:AI, physics:hep-th (repeatable; default: [ingestion].sets"
            ", else all of arXiv).",
        ),
    ] = None,
    metadata_format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="arXivRaw (all versions, default) or arXiv."),
    ] = None,
    from_date: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="YYYY-MM-DD. Default: the date of the last completed harvest's responseDate "
            "(incremental), or everything on the first run.",
        ),
    ] = None,
    until_date: Annotated[str | None, typer.Option("--until", help="YYYY-MM-DD.")] = None,
    max_pages: Annotated[
        int | None,
        typer.Option("--max-pages", help="Stop after N pages; the next run continues from there."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Fetch and parse, land nothing.")
    ] = False,
    rss: Annotated[
        str | None,
        typer.Option(
            "--rss",
            help="Land today's announcements from the RSS/Atom feed of these categories "
            "(e.g. cs.AI+cs.LG) instead of harvesting OAI-PMH.",
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="OAI-PMH base URL (default: [ingestion].endpoint)."),
    ] = None,
) -> None:
    """Harvest arXiv metadata into lake.raw_records (crash-safe, resumable, incremental).

    Each page lands together with the harvest cursor in one transaction: kill it at any
    moment and run it again to resume. Without --from it fetches only what changed since the
    last completed harvest of the same set and format.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from papersys.errors import UsageError
    from papersys.ingestion.harvest import harvest, parse_cli_date
    from papersys.ingestion.rss import ingest_rss

    config = get_config(ctx)
    if rss is not None:
        if sets or from_date or until_date or max_pages or metadata_format:
            raise UsageError("--rss takes no --set/--format/--from/--until/--max-pages")
        result = ingest_rss(config, rss, dry_run=dry_run)
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(result.announce_types.items())) or "-"
        verb = "parsed (dry run)" if result.dry_run else "landed"
        console.print(f"{verb} {result.records:,} announcements from {result.url} ({kinds})")
        if result.harvest_id:
            console.print(f"harvest {result.harvest_id}")
        return
    start = parse_cli_date(from_date, "--from")
    end = parse_cli_date(until_date, "--until")
    tasks: dict[str | None, Any] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[records]:,} records"),
        TimeElapsedColumn(),
        _rate_eta_column(),
        console=err_console,
        transient=False,
    ) as progress:
        results = harvest(
            config,
            sets=sets,
            metadata_prefix=metadata_format,
            from_date=start,
            until_date=end,
            max_pages=max_pages,
            dry_run=dry_run,
            endpoint=endpoint,
            on_page=_harvest_progress(progress, tasks),
        )
    table = Table(title="dry run (nothing landed)" if dry_run else "harvests", title_justify="left")
    for col in ("set", "harvest", "status", "window", "pages", "records", "deleted", "notes"):
        table.add_column(col, justify="right" if col in ("pages", "records", "deleted") else "left")
    for r in results:
        window = f"{r.from_date or '…'} → {r.until_date or '…'}"
        notes = list(r.notes)
        if r.incremental:
            notes.insert(0, "incremental")
        if r.resumed:
            notes.insert(0, "resumed")
        if r.restarts:
            notes.append(f"window restarted {r.restarts}x, {r.skipped:,} already-landed skipped")
        if r.nothing_new:
            notes.append("no records match: nothing new")
        table.add_row(
            r.set_spec or "all",
            r.harvest_id or "-",
            r.status,
            window,
            str(r.pages),
            f"{r.records:,}",
            f"{r.deleted:,}",
            "; ".join(notes),
        )
    console.print(table)


def _rate_eta_column() -> Any:
    """A progress column: records per second and, when the list size is known, time left."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateEtaColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            if not speed:
                return Text("-- rec/s", style="progress.data.speed")
            text = f"{speed:,.0f} rec/s"
            if task.total and task.remaining is not None:
                secs = int(task.remaining / speed)
                text += f"  ETA {secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
            return Text(text, style="progress.data.speed")

    return RateEtaColumn()


@app.command("demo")
def demo(
    ctx: typer.Context,
    sample: Annotated[
        Path | None,
        typer.Option(help="Directory of OAI-PMH pages to replay (default: the bundled sample)."),
    ] = None,
) -> None:
    """Run the pipeline offline on the bundled sample of real arXiv records.

    Serves the sample's OAI-PMH pages from a local HTTP server on 127.0.0.1, harvests them
    with the real client into the configured lake, then shows the status.
    """
    from papersys.ingestion.harvest import harvest
    from papersys.ingestion.replay import SAMPLE_DIR, OAIReplay, ReplayServer

    config = get_config(ctx)
    replay = OAIReplay.from_dir(sample or SAMPLE_DIR)
    with ReplayServer(replay) as server:
        local = config.ingestion.model_copy(
            update={"endpoint": server.url, "request_spacing": 0.0, "sets": []}
        )
        demo_config = config.model_copy(update={"ingestion": local})
        console.print(
            f"[bold]ingest[/] replaying {len(replay.pages)} OAI-PMH pages from {server.url}"
        )
        results = harvest(demo_config, metadata_prefix=replay.prefix)
    for r in results:
        extra = " (nothing new)" if r.nothing_new else ""
        console.print(
            f"harvest {r.harvest_id}: {r.status}, {r.pages} page(s), {r.records:,} records"
            f", {r.deleted:,} deleted{extra}"
        )
    status(ctx, as_json=False)


# --- transform (papersys/transform.py) ---


# --- embed-gaps (papersys/embedding) ---


# --- migrate (papersys/migration) ---


# --- operate: schedule, export, snapshots, rollback, maintain, demo ---


def main() -> None:
    app()
