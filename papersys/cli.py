"""Command-line interface: a thin Typer layer that parses options, calls the library, renders.

Exit codes: 0 ok, 1 failure, 2 usage error. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
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
    rich_markup_mode=None,  # help text as written: "[scheduler.jobs]" is not markup
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    cls=_Group,
    help="Check or show the configuration.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
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
    """Show raw records, harvests and their cursors, embedding coverage per model x year,
    the last run of each job, lake size and snapshot count."""
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
    _render_operations_status(report)


def _render_operations_status(report: dict[str, Any]) -> None:
    """Coverage per model x year, last run of each job, lake size and snapshots."""
    if report.get("coverage"):
        coverage = Table(title="embedding coverage", title_justify="left")
        for col in ("model", "year", "papers", "embedded", "missing", "%"):
            coverage.add_column(col, justify="left" if col == "model" else "right")
        for c in report["coverage"]:
            coverage.add_row(
                c["model"],
                str(c["year"] if c["year"] is not None else "-"),
                f"{c['papers']:,}",
                f"{c['embedded']:,}",
                f"{c['missing']:,}",
                f"{c['percent'] or 0:.1f}",
            )
        console.print(coverage)
    if report.get("jobs"):
        jobs = Table(title="jobs", title_justify="left")
        for col in ("job", "last status", "finished", "took", "ok", "failed", "running on"):
            jobs.add_column(col)
        for j in report["jobs"]:
            finished = j.get("finished_at")
            jobs.add_row(
                j["job"],
                j.get("status") or "-",
                finished.strftime("%Y-%m-%d %H:%M:%S") if finished else "-",
                f"{j['duration_s']:.1f}s" if j.get("duration_s") is not None else "-",
                str(j.get("succeeded") or 0),
                str(j.get("failed") or 0),
                j.get("running_on") or "-",
            )
        console.print(jobs)
    info = report["lake"]
    if "data_bytes" in info:
        console.print(
            f"lake data: {info['data_files']:,} files, {_human_bytes(info['data_bytes'])}; "
            f"{info['snapshots']:,} snapshots (current {info['current_snapshot']})"
        )


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
            help="OAI set, e.g. cs, cs:cs:AI, physics:hep-th (repeatable; default: ingestion.sets"
            " in the config, else all of arXiv).",
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
        typer.Option(
            "--endpoint", help="OAI-PMH base URL (default: ingestion.endpoint in the config)."
        ),
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
    if not config.ingestion.contact and not config.ingestion.user_agent:
        err_console.print(
            "[yellow]warning:[/] no ingestion.contact in the config; arXiv asks harvesters "
            "to send a contact address in the User-Agent",
            highlight=False,
        )
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
    """Run the whole pipeline offline on the bundled sample of real arXiv records.

    Serves the sample's OAI-PMH pages from a local HTTP server on 127.0.0.1 and harvests them
    with the real client into the configured lake, runs the dbt project (papers, gaps,
    coverage), embeds every paper with the packaged all-MiniLM-L6-v2, shows the status and
    prints example queries for the DuckDB shell. Run it again: nothing lands twice.
    """
    import os

    from papersys.config import PACKAGED_MINILM
    from papersys.ingestion.harvest import harvest
    from papersys.ingestion.replay import SAMPLE_DIR, OAIReplay, ReplayServer

    # The demo needs nothing from the network: the model is the packaged one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    config = get_config(ctx)
    replay = OAIReplay.from_dir(sample or SAMPLE_DIR)
    console.rule("[bold]1/4 ingest")
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
    console.rule("[bold]2/4 transform (dbt build)")
    transform_command(ctx, select=None, full_refresh=False, skip_tests=False)
    console.rule("[bold]3/4 embed-gaps")
    packaged = [n for n, m in config.embedding.models.items() if m.model == PACKAGED_MINILM]
    embed_gaps_command(
        ctx,
        models=packaged or None,
        limit=None,
        year=None,
        reason=None,
        dry_run=False,
        isolate=None,
    )
    console.rule("[bold]4/4 status")
    status(ctx, as_json=False)
    _print_demo_queries(config, packaged[0] if packaged else None)


def _print_demo_queries(config: Config, model: str | None) -> None:
    """Three queries to try in the DuckDB shell on the demo's lake."""
    default_catalog = (
        config.lake.catalog is None
        and config.lake.root.resolve() == (Path.cwd() / "lake").resolve()
    )
    console.rule("[bold]explore")
    # The shell comes with the install (duckdb-cli), next to this Python when not on PATH.
    shell = "duckdb"
    if shutil.which("duckdb") is None:
        beside = Path(sys.executable).parent / "duckdb"
        if beside.exists():
            relative = os.path.relpath(beside)
            shell = str(beside) if relative.startswith("..") else relative
    if default_catalog:
        console.print(
            f"Open the lake in the DuckDB shell:  {shell} -init sql/attach.sql",
            highlight=False,
            markup=False,
        )
    else:
        console.print(
            "Open the lake in the DuckDB shell (sql/attach.sql attaches ./lake; for this lake):\n"
            "  LOAD ducklake; LOAD sqlite_scanner;\n"
            f"  ATTACH '{config.lake.catalog_uri}' AS lake (READ_ONLY); USE lake;",
            highlight=False,
            markup=False,
        )
    queries = [
        "-- papers and how many have several versions, per year\n"
        "SELECT year, count(*) AS papers, count(*) FILTER (version_count > 1) AS revised\n"
        "FROM papers GROUP BY year ORDER BY year;",
        "-- embedding coverage per model and year\n"
        "SELECT model, year, papers, embedded, missing FROM embedding_coverage\n"
        "ORDER BY model, year;",
    ]
    if model is not None:
        dim = config.embedding.models[model].dim
        table = f"embeddings_{model}"
        queries.append(
            "-- the five papers closest to 0704.0001, by cosine similarity of their vectors\n"
            f"SELECT p.arxiv_id, p.title,\n"
            f"       array_cosine_similarity(e.embedding::FLOAT[{dim}], "
            f"q.embedding::FLOAT[{dim}]) AS similarity\n"
            f"FROM {table} e JOIN papers p USING (arxiv_id),\n"
            f"     (SELECT embedding FROM {table} WHERE arxiv_id = '0704.0001') q\n"
            "WHERE p.arxiv_id <> '0704.0001' ORDER BY similarity DESC LIMIT 5;"
        )
    for query in queries:
        console.print(query, highlight=False, markup=False)
        console.print()


# --- transform (papersys/transform.py) ---


@app.command("transform")
def transform_command(
    ctx: typer.Context,
    select: Annotated[
        list[str] | None,
        typer.Option("--select", "-s", help="dbt node selection, e.g. papers+ (repeatable)."),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option("--full-refresh", help="Rebuild papers from every raw record."),
    ] = False,
    skip_tests: Annotated[
        bool, typer.Option("--skip-tests", help="dbt run instead of dbt build (no data tests).")
    ] = False,
) -> None:
    """Run the dbt project on the lake (dbt build): papers, missing_embeddings, coverage.

    Incremental by default: only raw records landed since the last run are parsed and merged
    into papers (tombstones remove papers). Every configured embedding model is registered first,
    so the gap views cover it.

    Example: papersys transform --select papers+
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from papersys.transform import run_build

    config = get_config(ctx)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("[dim]{task.completed} done"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("dbt build", total=None)

        def on_node(name: str, status: str) -> None:
            if status == "started":
                progress.update(task, description=f"dbt: {name}")
            else:
                progress.advance(task)

        result = run_build(
            config,
            command="run" if skip_tests else "build",
            select=select or (),
            full_refresh=full_refresh,
            on_node=on_node,
        )
    table = Table(title=f"dbt {result.command}", title_justify="left")
    for col in ("node", "type", "status", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for node in result.nodes:
        colour = "green" if node.status in {"success", "pass"} else "yellow"
        table.add_row(
            node.name, node.resource_type, f"[{colour}]{node.status}[/]", f"{node.seconds:.2f}"
        )
    console.print(table)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts().items()))
    console.print(
        f"[green]ok[/] dbt {result.command} in {result.seconds:.1f}s ({counts}); "
        f"models: {', '.join(result.models_registered) or 'none'}"
    )


# --- embed-gaps (papersys/embedding) ---


@app.command("embed-gaps")
def embed_gaps_command(
    ctx: typer.Context,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model name from [embedding.models] (repeatable; default: all).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Embed at most N papers per model.")
    ] = None,
    year: Annotated[int | None, typer.Option("--year", help="Only papers of this year.")] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Only gaps of this kind: absent, stale or invalid."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the gaps per reason; embed nothing.")
    ] = False,
    isolate: Annotated[
        bool | None,
        typer.Option(
            "--isolate/--in-process",
            help="Encode in one spawned worker process (default: only for vLLM).",
        ),
    ] = None,
) -> None:
    """Embed every paper that has no valid, current vector (lake.missing_embeddings).

    Streams gaps in chunks, encodes them, validates every vector (finite, non-zero, right
    dimension) and writes each chunk in one transaction, replacing stale rows. Safe to
    interrupt and rerun; a second run for the same model at the same time is refused.

    Example: papersys embed-gaps --model minilm --year 2024 --limit 10000
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from papersys.embedding.runner import ModelRun, embed_gaps

    config = get_config(ctx)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]:>8} docs/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}

    def on_model_start(run: ModelRun) -> None:
        label = f"{run.model} (loading model)" if run.total_gaps else run.model
        tasks[run.model] = progress.add_task(label, total=None, rate="-")

    def on_progress(model: str, done: int, total: int) -> None:
        import time

        task = tasks[model]
        now = time.perf_counter()
        if done == 0 or model not in started:
            started[model] = now
            progress.update(task, description=model)
        elapsed = now - started[model]
        rate = f"{done / elapsed:,.1f}" if done and elapsed > 0 else "-"
        progress.update(task, completed=done, total=total, rate=rate)

    with progress:
        runs = embed_gaps(
            config,
            models or None,
            limit=limit,
            year=year,
            reason=reason,
            dry_run=dry_run,
            isolate=isolate,
            on_progress=None if dry_run else on_progress,
            on_model_start=None if dry_run else on_model_start,
        )
    title = "embedding gaps (dry run)" if dry_run else "embed-gaps"
    table = Table(title=title, title_justify="left")
    columns = ["model", "status", "gaps"]
    if not dry_run:
        columns += ["embedded", "replaced", "rejected", "skipped", "time", "docs/s", "device"]
    for col in columns:
        table.add_column(
            col, justify="left" if col in ("model", "status", "gaps", "device") else "right"
        )
    for run in runs:
        gaps = ", ".join(f"{n:,} {r}" for r, n in sorted(run.gaps.items())) or "none"
        row = [run.model, run.status, gaps]
        if not dry_run:
            device = f"{run.encoder.device}/{run.encoder.dtype}" if run.encoder else "-"
            row += [
                f"{run.embedded:,}",
                f"{run.replaced:,}",
                f"{len(run.rejects):,}",
                f"{run.skipped:,}",
                f"{run.seconds:.1f}s",
                f"{run.docs_per_second:,.1f}",
                device,
            ]
        table.add_row(*row)
    console.print(table)
    failed = False
    for run in runs:
        for reject in run.rejects[:20]:
            err_console.print(
                f"[yellow]rejected[/] {run.model} {reject.arxiv_id}: {reject.problem} "
                f"({reject.detail})",
                highlight=False,
            )
        if len(run.rejects) > 20:
            err_console.print(
                f"[yellow]…and {len(run.rejects) - 20} more rejected vectors in "
                "lake.embedding_rejects[/]"
            )
        if run.status == "busy" and run.holder is not None:
            failed = True
            err_console.print(
                f"[bold red]error:[/] model '{run.model}' is being embedded by another run "
                f"({run.holder.describe()}); nothing done for it, try again later",
                highlight=False,
            )
    if failed:
        raise typer.Exit(1)


# --- migrate (papersys/migration) ---

migrate_app = typer.Typer(
    cls=_Group,
    help="Import legacy datasets (yearly Parquet, split CSV/Parquet, sharded pairs) and report.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(migrate_app, name="migrate")


@migrate_app.command("legacy")
def migrate_legacy_command(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="Folder of a legacy dataset, or hf://datasets/<owner>/<name> (needs network)."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read, validate and report; write nothing.")
    ] = False,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help='TOML: [columns] their_name = "our_name", [models] alias = "model", shape = "A".',
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="ALIAS=MODEL_ID:DIM (define a model, e.g. jasper_v1=NovaSearch/jasper_en_vision"
            "_language_v1:1024) or ALIAS=NAME (a configured model). Repeatable.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Rows per record batch and per transaction.")
    ] = 4096,
    show: Annotated[int, typer.Option("--show", help="Defect lines to print.")] = 40,
) -> None:
    """Import a legacy dataset into the lake, streaming, and report every defect.

    Metadata goes to legacy_papers (dbt's papers includes it); vectors go to
    embeddings_<model> only when valid (finite, non-zero, right dimension, known id); invalid
    ones go to embedding_rejects so `embed-gaps` recomputes them. Idempotent: a rerun replaces
    rows by id. Each run is recorded in migration_runs with a manifest of files and checksums.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from papersys.migration import migrate_legacy

    config = get_config(ctx)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows"),
        TimeElapsedColumn(),
        _rate_eta_column(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("reading", total=None)

        def on_progress(p: Any) -> None:
            progress.update(task, description=p.file, completed=p.rows_done, total=p.rows_total)

        result = migrate_legacy(
            config,
            source,
            dry_run=dry_run,
            mapping_file=mapping,
            model_specs=model,
            batch_size=batch_size,
            on_progress=on_progress,
        )
    _render_migration(result, show)


@migrate_app.command("report")
def migrate_report_command(
    ctx: typer.Context,
    run: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the latest completed run).")
    ] = None,
    runs: Annotated[bool, typer.Option("--runs", help="List the recorded runs instead.")] = False,
    show: Annotated[int, typer.Option("--show", help="Defect lines to print.")] = 40,
) -> None:
    """Print the migration report (the same figures as the dbt models migration_report and
    migration_issues in `dbt docs`)."""
    from papersys.migration.report import list_runs, load_report

    config = get_config(ctx)
    if runs:
        table = Table(title="migration runs", title_justify="left")
        for col in ("run", "source", "shape", "status", "started", "finished", "error"):
            table.add_column(col)
        for r in list_runs(config):
            table.add_row(
                r["run_id"],
                str(r["source"]),
                str(r["shape"]),
                str(r["status"]),
                str(r["started_at"])[:19],
                str(r["finished_at"] or "-")[:19],
                str(r["error"] or ""),
            )
        console.print(table)
        return
    _render_migration(load_report(config, run), show)


def _render_migration(result: Any, show: int) -> None:
    """Files, per-model vectors and defect counts of a migration as rich tables."""
    from papersys.migration import DEFECT_KINDS

    head = "dry run (nothing written)" if result.dry_run else f"run {result.run_id}"
    console.print(
        f"[bold]{head}[/] {result.source}  shape {result.shape}  status {result.status}"
        f"  ({result.elapsed_s:.1f} s)",
        highlight=False,
    )
    if result.models:
        console.print(
            "models: "
            + ", ".join(f"{m.alias} → {m.name} ({m.model_id}, {m.dim}-d)" for m in result.models),
            highlight=False,
        )
    files = Table(title="files", title_justify="left")
    for col in ("file", "year", "model", "rows", "landed", "stored", "rejected", "vectors"):
        files.add_column(
            col, justify="right" if col in ("rows", "landed", "stored", "rejected") else "left"
        )
    for f in result.files:
        vector = f.model is not None
        files.add_row(
            f.file,
            f.year,
            f.model or "(metadata)",
            f"{f.rows:,}",
            "" if vector else f"{f.papers_landed:,}",
            f"{f.vectors_stored:,}" if vector else "",
            f"{f.vectors_rejected:,}" if vector else "",
            f.vector_type or "",
        )
    console.print(files)
    by_kind: dict[str, int] = {}
    for issue in result.issues:
        by_kind[issue.kind] = by_kind.get(issue.kind, 0) + issue.count
    kinds = Table(title="defects by kind", title_justify="left")
    kinds.add_column("kind")
    kinds.add_column("count", justify="right")
    kinds.add_column("meaning")
    for kind in DEFECT_KINDS:
        if kind in by_kind:
            kinds.add_row(kind, f"{by_kind[kind]:,}", DEFECT_KINDS[kind])
    console.print(kinds)
    detail = Table(title="defects by file and year", title_justify="left")
    for col in ("file", "year", "model", "kind", "count", "examples"):
        detail.add_column(col, justify="right" if col == "count" else "left")
    ordered = sorted(result.issues, key=lambda i: (i.file, i.model or "", i.kind))
    for issue in ordered[:show]:
        detail.add_row(
            issue.file,
            issue.year,
            issue.model or "",
            issue.kind,
            f"{issue.count:,}",
            ", ".join(issue.examples),
        )
    console.print(detail)
    if len(ordered) > show:
        console.print(
            f"… {len(ordered) - show} more lines (--show N, or the dbt model migration_issues)"
        )
    t = result.totals
    console.print(
        f"rows {t['rows']:,}  papers landed {t['papers_landed']:,}  vectors stored "
        f"{t['vectors_stored']:,}  rejected {t['vectors_rejected']:,}  defects {t['defects']:,}",
        highlight=False,
    )


# --- operate: schedule, export, snapshots, rollback, maintain, demo ---


def _job_outcome_line(outcome: Any) -> str:
    colour = {"succeeded": "green", "failed": "red", "skipped": "yellow"}[outcome.status]
    attempts = len([r for r in outcome.runs if r.status != "skipped"])
    took = sum(r.duration_s for r in outcome.runs)
    text = f"[{colour}]{outcome.status}[/] {outcome.job}"
    if outcome.status == "skipped":
        return f"{text}: already running ({outcome.held_by})"
    text += f" in {took:.1f}s ({attempts} attempt{'s' if attempts != 1 else ''})"
    if outcome.status == "failed" and outcome.error:
        text += f": {outcome.error}"
    return text


@app.command("schedule")
def schedule(
    ctx: typer.Context,
    once: Annotated[
        str | None,
        typer.Option(
            "--once",
            metavar="JOB",
            help="Run JOB now (with its retries) and exit: for cron. "
            "Jobs: ingest, transform, embed, embedding_backfill, maintain.",
        ),
    ] = None,
    job: Annotated[
        list[str] | None,
        typer.Option("--job", "-j", help="Only schedule these jobs (repeatable)."),
    ] = None,
    list_jobs: Annotated[
        bool, typer.Option("--list", help="Show the jobs, their schedules and next runs.")
    ] = False,
) -> None:
    """Run the jobs on their cron schedules from [scheduler.jobs] (UTC), or one job with --once.

    A job never runs twice at once, across processes and machines: each run takes the job's
    lease in the lake first (a run that finds it taken is logged as skipped). Failed attempts
    are retried (retries, retry_delay doubling); every attempt is logged in lake.job_runs.
    Metrics go to [scheduler].metrics_textfile after each job and are served on
    [scheduler].metrics_port while the scheduler runs.
    """
    import datetime as dt
    import threading

    from papersys import metrics
    from papersys.scheduler import JOBS, Scheduler

    config = get_config(ctx)
    hook = None
    if config.scheduler.metrics_textfile is not None:

        def hook() -> None:
            metrics.write_textfile(config)

    def on_event(event: Any) -> None:
        if event.kind in ("started", "attempt_failed", "skipped"):
            stamp = event.at.strftime("%Y-%m-%d %H:%M:%S")
            err_console.print(f"[dim]{stamp}[/] {event.message}", highlight=False)

    runner = Scheduler(config, on_event=on_event, metrics_hook=hook)
    if list_jobs:
        table = Table(title="scheduled jobs (UTC)", title_justify="left")
        for col in ("job", "cron", "enabled", "retries", "next run", "what it does"):
            table.add_column(col)
        upcoming = runner.next_runs(dt.datetime.now(dt.UTC))
        for name, spec in config.scheduler.jobs.items():
            nxt = upcoming.get(name)
            table.add_row(
                name,
                spec.cron,
                "yes" if spec.enabled else "no",
                str(spec.retries),
                nxt.strftime("%Y-%m-%d %H:%M") if nxt else "-",
                JOBS[name].description,
            )
        console.print(table)
        return
    if once is not None:
        outcome = runner.run_job(once, trigger="once")
        console.print(_job_outcome_line(outcome), highlight=False)
        if outcome.status == "failed":
            raise typer.Exit(1)
        return
    stop = threading.Event()
    server = None
    if config.scheduler.metrics_port is not None:
        server = metrics.MetricsServer(config).start()
        console.print(f"metrics on http://0.0.0.0:{server.port}/metrics")
    upcoming = runner.next_runs(dt.datetime.now(dt.UTC))
    for name, when in sorted(upcoming.items(), key=lambda kv: kv[1]):
        if not job or name in job:
            console.print(f"{name:<20} next {when:%Y-%m-%d %H:%M} UTC")
    try:
        for outcome in _iter_outcomes(runner, stop, job):
            console.print(_job_outcome_line(outcome), highlight=False)
    except KeyboardInterrupt:
        stop.set()
        console.print("stopped")
    finally:
        if server is not None:
            server.stop()


def _iter_outcomes(runner: Any, stop: Any, only: list[str] | None) -> Any:
    """Run the scheduler, yielding each job's outcome as it ends."""
    import queue
    import threading

    done: queue.Queue[Any] = queue.Queue()
    original = runner.run_job

    def run_job(name: str, trigger: str = "once") -> Any:
        outcome = original(name, trigger)
        done.put(outcome)
        return outcome

    runner.run_job = run_job
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            runner.run(stop=stop, only=only)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.put(None)

    thread = threading.Thread(target=loop, name="scheduler", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = done.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                break
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
    if errors:
        raise errors[0]


@app.command("metrics")
def metrics_command(
    ctx: typer.Context,
    textfile: Annotated[
        Path | None,
        typer.Option(help="Write to this file (atomically) instead of printing."),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve /metrics on [scheduler].metrics_port.")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Port for --serve (overrides config).")] = None,
) -> None:
    """Print Prometheus metrics computed from the lake (right across processes).

    Records and pages harvested, harvest restarts, job runs/failures/retries/durations,
    vectors per model, embedding gaps per model and reason, snapshots, lake size.
    """
    import time

    from papersys import metrics

    config = get_config(ctx)
    if serve:
        with metrics.MetricsServer(config, port=port) as server:
            console.print(f"serving http://0.0.0.0:{server.port}/metrics (Ctrl-C to stop)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return
    if textfile is not None:
        written = metrics.write_textfile(config, textfile)
        console.print(f"wrote {written}")
        return
    print(metrics.scrape(config), end="")  # raw exposition text, no rich markup


@app.command("export")
def export_command(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Argument(help="Output directory (created if needed).")],
    year: Annotated[
        list[int] | None, typer.Option("--year", "-y", help="Only this year (repeatable).")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Only this model's embeddings (repeatable)."),
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push",
            metavar="REPO",
            help="Then upload to this Hugging Face dataset repo (token from $HF_TOKEN).",
        ),
    ] = None,
    private: Annotated[bool, typer.Option(help="Create the Hub repo as private.")] = False,
) -> None:
    """Export the lake as a Hugging Face dataset: metadata/<year>.parquet and
    embeddings/<model>/<year>.parquet (fixed-size float32 vectors), each written atomically.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from papersys import export as exporter

    config = get_config(ctx)
    with Progress(
        TextColumn("[bold]export[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("export", total=None, last="")

        def on_file(f: Any) -> None:
            progress.update(task, advance=1, last=str(f.path.relative_to(out_dir)))

        result = exporter.export(config, out_dir, years=year, models=model, on_file=on_file)
    table = Table(title=f"exported to {out_dir}", title_justify="left")
    for col, justify in (("file", "left"), ("rows", "right"), ("size", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for f in result.files:
        table.add_row(str(f.path.relative_to(out_dir)), f"{f.rows:,}", _human_bytes(f.bytes))
    console.print(table)
    if push:
        url = exporter.push(out_dir, push, private=private)
        console.print(f"pushed to {push}: {url}")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


@app.command("snapshots")
def snapshots_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show this many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the lake's DuckLake snapshots (every commit is one): id, time, what changed."""
    from papersys import lake
    from papersys.snapshots import snapshot_rows

    con = lake.connect(get_config(ctx))
    try:
        rows = snapshot_rows(con, limit)
    finally:
        con.close()
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title="snapshots (newest first)", title_justify="left")
    for col in ("id", "time (UTC)", "changes", "message"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for r in rows:
        table.add_row(
            str(r["snapshot_id"]),
            r["snapshot_time"].strftime("%Y-%m-%d %H:%M:%S"),
            r["changes"],
            r["commit_message"] or "",
        )
    console.print(table)
    console.print("time travel: SELECT ... FROM lake.<table> AT (VERSION => <id>)")


@app.command("rollback")
def rollback_command(
    ctx: typer.Context,
    to: Annotated[int, typer.Option("--to", help="Snapshot id to go back to (see `snapshots`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Make the lake's data what it was at snapshot N, in one transaction.

    DuckLake has no in-place rollback, so this rewrites every table that changed after N with
    its rows as of N (tables created later are emptied). It commits whole or not at all, is
    itself a new snapshot (roll back the rollback with the id it prints before), and keeps
    the schema, the job log and the leases as they are. Shows the plan and asks first.
    """
    from papersys import lake
    from papersys.snapshots import plan_rollback, rollback

    con = lake.connect(get_config(ctx))
    try:
        plan = plan_rollback(con, to)
        if plan.empty:
            console.print(f"nothing to do: no rows changed after snapshot {to}")
            return
        table = Table(
            title=f"rollback to snapshot {to} ({plan.target_time:%Y-%m-%d %H:%M:%S} UTC); "
            f"now at {plan.current}",
            title_justify="left",
        )
        for col in ("table", "rows now", f"rows at {to}"):
            table.add_column(col, justify="left" if col == "table" else "right")
        for item in plan.tables:
            then = f"{item.rows_then:,}" if item.existed_then else "(created later: emptied)"
            table.add_row(item.table, f"{item.rows_now:,}", then)
        console.print(table)
        if not yes:
            try:
                confirmed = typer.confirm("Roll back these tables?", default=False)
            except (click.exceptions.Abort, typer.Abort, EOFError):
                confirmed = False
            if not confirmed:
                err_console.print("not rolled back (pass --yes to skip this question)")
                raise typer.Exit(1)
        result = rollback(con, to, expected_current=plan.current)
    finally:
        con.close()
    console.print(
        f"[green]rolled back[/] {len(result.plan.tables)} table(s) to snapshot {to}; "
        f"new snapshot {result.snapshot} (undo: papersys rollback --to {plan.current})"
    )


@app.command("maintain")
def maintain_command(
    ctx: typer.Context,
    retention_days: Annotated[
        float | None,
        typer.Option(help="Keep this many days of snapshots ([lake].snapshot_retention_days)."),
    ] = None,
) -> None:
    """Merge small Parquet files, expire snapshots older than the retention, delete unused files.

    Data reads the same before and after; snapshots older than the retention can no longer be
    time-travelled to or rolled back to.
    """
    from papersys import lake
    from papersys.snapshots import maintain

    config = get_config(ctx)
    con = lake.connect(config)
    try:
        result = maintain(con, config, retention_days=retention_days)
    finally:
        con.close()
    console.print(
        f"files {result.files_before:,} → {result.files_after:,}, "
        f"data {_human_bytes(result.bytes_before)} → {_human_bytes(result.bytes_after)}, "
        f"snapshots {result.snapshots_before:,} → {result.snapshots_after:,} "
        f"(expired those before {result.expired_before:%Y-%m-%d %H:%M} UTC)"
    )


def main() -> None:
    app()
