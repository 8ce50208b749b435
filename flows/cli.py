"""The `salesops` command line. Problems in the input are plain messages, never stack traces."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from tasks.check import InputError
from tasks.mapping import MappingError, load_mapping
from tasks.normalize import normalize_value

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)
ROUTES_HELP = "Notification routing: YAML/TOML, 宛先 -> Apprise URLs (also SALESOPS_ROUTE_<NAME>=url). Default: the console."


def parse_now(text: str | None) -> pd.Timestamp:
    if text is None:
        return pd.Timestamp.now(tz="Asia/Tokyo").floor("s")
    value, problem = normalize_value("datetime", text)
    if problem:
        raise typer.BadParameter(f"--now {text!r}: {problem}")
    return value


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def reconcile(
    workbook: Path = typer.Option(None, help="Local .xlsx workbook (the embedded default)."),
    now: str = typer.Option(None, help="The run's clock, e.g. 2026-11-20T10:00+09:00 (default: now)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan as a diff; write nothing."),
    baseline: bool = typer.Option(False, "--baseline", help="Adoption run: fill everything, notify nobody."),
    mappings: Path = typer.Option(None, help="Directory of mapping YAML files (default: the shipped ones)."),
    routes: Path = typer.Option(None, "--routes", envvar="SALESOPS_ROUTES", help=ROUTES_HELP),
    spreadsheet: list[str] = typer.Option(
        None, "--spreadsheet", help="Google spreadsheet id or URL (the main one); ALIAS=ID for a spreadsheet "
        "the mappings name (e.g. links=ID). Repeatable."),
    credentials: str = typer.Option(
        None, "--credentials", help="Service-account key: a JSON file, env:VAR or prefect-secret:BLOCK "
        "(default: the JSON in $SALESOPS_GOOGLE_CREDENTIALS)."),
    sheets_endpoint: str = typer.Option(
        None, "--sheets-endpoint", envvar="SALESOPS_SHEETS_ENDPOINT",
        help="Another Sheets API server (a stand-in); the token flow goes there too."),
) -> None:
    """Read the sheets, reconcile them with the rules, write the difference, tell people."""
    if bool(workbook) == bool(spreadsheet):
        _fail("give --workbook PATH or --spreadsheet ID")
    google = {"spreadsheet": spreadsheet, "credentials": credentials, "endpoint": sheets_endpoint} if spreadsheet else None
    run_and_report(workbook, parse_now(now), dry_run=dry_run, baseline=baseline, mappings=mappings, google=google,
                   routes=routes)


@app.command()
def merge(
    workbook: Path = typer.Option(None, help="Local .xlsx workbook (the embedded default)."),
    now: str = typer.Option(None, help="The run's clock, e.g. 2026-11-20T10:00+09:00 (default: now)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the merge plan as a diff; write nothing."),
    mappings: Path = typer.Option(None, help="Directory of mapping YAML files (default: the shipped ones)."),
) -> None:
    """Merge the duplicate customers staff approved in 重複候補 (統合可 and 承認 ticked). Irreversible."""
    if workbook is None:
        _fail("give --workbook PATH")
    run_and_report(workbook, parse_now(now), dry_run=dry_run, baseline=False, mappings=mappings, merge=True)


@app.command()
def demo(
    dir: Path = typer.Option(Path("demo"), "--dir", help="Where to write the demo workbook."),
    customers: int = typer.Option(300, help="How many synthetic customers."),
    now: str = typer.Option("2026-11-20T10:00+09:00", help="The demo's clock."),
    seed: int = typer.Option(7),
    routes: Path = typer.Option(None, "--routes", envvar="SALESOPS_ROUTES", help=ROUTES_HELP),
) -> None:
    """Write a realistic synthetic workbook and run the reconcile on it."""
    from tasks.demo_data import make_team_workbook

    stamp = parse_now(now)
    dir.mkdir(parents=True, exist_ok=True)
    path = make_team_workbook(dir / "team.xlsx", customers, seed=seed, now=stamp.to_pydatetime())
    console.print(f"demo workbook: {path} ({customers} synthetic customers)")
    run_and_report(path, stamp, dry_run=False, baseline=False, mappings=None, routes=routes)
    console.print(f"open it: {path.resolve()}")


@app.command()
def digest(
    workbook: Path = typer.Option(None, help="Local .xlsx workbook."),
    now: str = typer.Option(None, help="The run's clock, e.g. 2026-11-20T18:00+09:00 (default: now)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the digest notices; write and send nothing."),
    mappings: Path = typer.Option(None, help="Directory of mapping YAML files (default: the shipped ones)."),
    routes: Path = typer.Option(None, "--routes", envvar="SALESOPS_ROUTES", help=ROUTES_HELP),
) -> None:
    """Send each person their open items (alerts, L-Step操作, payment links) in one message: the end of the day."""
    from flows.pipeline import run
    from flows.report import print_summary
    from tasks.notify import RouteConfigError, sender
    from tasks.rules.digest import digest_plan
    from tasks.workbooks.local import LocalWorkbook

    if workbook is None:
        _fail("give --workbook PATH")
    stamp = parse_now(now)
    try:
        mapping = load_mapping(mappings)
        send = sender(routes)
        if os.environ.get("PREFECT_API_URL"):
            from flows.digest import digest_flow

            summary = digest_flow(workbook=str(workbook), now=stamp.isoformat(), dry_run=dry_run,
                                  routes=str(routes) if routes else None)
        else:
            summary = run(LocalWorkbook(workbook), mapping, stamp, send, dry_run=dry_run, plan_with=digest_plan)
    except (MappingError, InputError, FileNotFoundError, RouteConfigError) as exc:
        _fail(str(exc))
    print_summary(summary, mapping, console, show_diff=dry_run)


@app.command()
def setup(
    requests_per_minute: int = typer.Option(
        50, "--requests-per-minute", min=1, envvar="SALESOPS_SHEETS_PER_MINUTE",
        help="Sheets requests a minute that every worker together may make (Google's quota: 60 per user)."),
    credentials: Path = typer.Option(
        None, "--credentials", help="Service-account JSON key to keep in the Prefect Secret block "
        "salesops-google-credentials (deployments read it from there)."),
    pool: str = typer.Option("salesops", help="The process work pool the deployments use."),
) -> None:
    """Create the Prefect work pool, the shared Sheets rate limit and the key's Secret block (idempotent)."""
    from prefect.settings import PREFECT_API_URL

    from flows.setup import SECRET, ensure_setup, rate_limit_shape
    from tasks.workbooks.credentials import CredentialsError, load_key

    if not PREFECT_API_URL.value():
        _fail("set PREFECT_API_URL to the Prefect server's API (e.g. http://127.0.0.1:4200/api)")
    try:
        if credentials is not None:
            load_key(credentials)  # a bad key fails here, in plain words, before it is stored
        result = ensure_setup(requests_per_minute, pool=pool, credentials=credentials)
    except CredentialsError as exc:
        _fail(str(exc))
    slots, decay = rate_limit_shape(requests_per_minute)
    console.print(f"work pool {result.pool} (process)")
    console.print(f"rate limit {result.limit}: {requests_per_minute} Sheets requests a minute "
                  f"({slots} slot, {decay:.3g} freed a second)")
    console.print(f"secret block {SECRET}: " + ("stored" if result.secret else "unchanged (no --credentials)"))


def run_and_report(
    workbook: Path | None, now: pd.Timestamp, *, dry_run: bool, baseline: bool, mappings: Path | None,
    merge: bool = False, google: dict | None = None, routes: Path | None = None,
) -> None:
    from flows.pipeline import run
    from flows.report import print_summary
    from tasks.notify import RouteConfigError, sender
    from tasks.workbooks.credentials import CredentialsError
    from tasks.workbooks.google import SheetsError, open_google
    from tasks.workbooks.local import LocalWorkbook

    try:
        mapping = load_mapping(mappings)
        send = sender(routes)
        book = open_google(google.pop("spreadsheet"), mapping=mapping, **google)[0] if google else LocalWorkbook(workbook)
        if merge:
            from flows.merge import merge_flow, run_merge

            if os.environ.get("PREFECT_API_URL"):
                summary = merge_flow(workbook=str(workbook), now=now.isoformat(), dry_run=dry_run)
            else:
                summary = run_merge(book, mapping, now, send, dry_run=dry_run)
        elif os.environ.get("PREFECT_API_URL"):  # a tracked flow run, still in this process (and its credentials)
            from flows.reconcile import reconcile_flow

            sheets = {"spreadsheet": ",".join(f"{a}={i}" for a, i in book.spreadsheets.items()),
                      "credentials": google.get("credentials"), "sheets_endpoint": google.get("endpoint")} if google else {}
            summary = reconcile_flow(
                workbook=None if google else str(workbook), now=now.isoformat(), dry_run=dry_run, baseline=baseline,
                mappings=str(mappings) if mappings else None, routes=str(routes) if routes else None, **sheets)
        else:
            summary = run(book, mapping, now, send, dry_run=dry_run, baseline=baseline)
    except (MappingError, InputError, FileNotFoundError, SheetsError, CredentialsError, RouteConfigError) as exc:
        _fail(str(exc))
    print_summary(summary, mapping, console, show_diff=dry_run)


@app.command("export-operations")
def export_operations(
    workbook: Path = typer.Option(None, help="Local .xlsx workbook."),
    out: Path = typer.Option(None, help="The CSV file to write."),
    encoding: str = typer.Option("utf-8-sig", help="utf-8-sig (UTF-8 with BOM) or cp932."),
    mappings: Path = typer.Option(None, help="Directory of mapping YAML files (default: the shipped ones)."),
) -> None:
    """Write the open タグ追加 / タグ削除 of L-Step操作 as a CSV for the LINE tool's bulk tag change."""
    from tasks.check import check
    from tasks.lstep_export import ENCODINGS, ExportError, build_export, write_export
    from tasks.workbooks.local import LocalWorkbook

    if workbook is None or out is None:
        _fail("give --workbook PATH and --out FILE")
    if encoding not in ENCODINGS:
        _fail(f"--encoding must be one of {', '.join(ENCODINGS)}")
    try:
        mapping = load_mapping(mappings)
        export = build_export(check(LocalWorkbook(workbook).read(), mapping), mapping)
        write_export(out, export, encoding)
    except (MappingError, InputError, FileNotFoundError, ExportError) as exc:
        _fail(str(exc))
    console.print(f"{out}: {len(export)} customers, {len(export.operations)} operations ({encoding})")
    for op_id, why in export.skipped:
        err.print(f"skipped {op_id}: {why}", highlight=False)


@app.command("apply-operations")
def apply_operations(
    workbook: Path = typer.Option(None, help="Local .xlsx workbook."),
    token: str = typer.Option(None, envvar="LSTEP_API_TOKEN", help="L-Step API token (or LSTEP_API_TOKEN)."),
    base_url: str = typer.Option(None, envvar="LSTEP_API_BASE_URL", help="API base URL (default: the mapping's)."),
    now: str = typer.Option(None, help="The run's clock, e.g. 2026-11-20T10:00+09:00 (default: now)."),
    mappings: Path = typer.Option(None, help="Directory of mapping YAML files (default: the shipped ones)."),
) -> None:
    """Apply the open タグ追加 / タグ削除 through the L-Step API and record each result in L-Step操作."""
    from tasks.check import check
    from tasks.lstep_api import LStepClient, LStepError
    from tasks.lstep_api import apply_operations as apply_all
    from tasks.workbooks.local import LocalWorkbook
    from tasks.workbooks.port import RunInfo, apply_plan

    if workbook is None:
        _fail("give --workbook PATH")
    if not token:
        _fail("no L-Step API token (LSTEP_API_TOKEN): the L-Step操作 tab is the interface")
    stamp = parse_now(now)
    try:
        mapping = load_mapping(mappings)
        book = LocalWorkbook(workbook)
        frames = check(book.read(), mapping)
        api = mapping.tags.api
        with LStepClient(token, base_url or api.base_url, requests_per_second=api.requests_per_second) as client:
            plan, outcomes = apply_all(frames, mapping, client, stamp)
        report = apply_plan(book, plan, mapping, RunInfo(f"{stamp:%Y%m%d-%H%M}-lstep", stamp))
    except (MappingError, InputError, FileNotFoundError, LStepError) as exc:
        _fail(str(exc))
    done = sum(o.ok for o in outcomes)
    console.print(f"applied {done} of {len(outcomes)} operations; {report.cells_written} cells written")
    for o in outcomes:
        if not o.ok:
            err.print(f"failed {o.operation_id}: {o.detail}", highlight=False)
    for s in report.skipped:
        err.print(f"not recorded {s.key} {s.field}: {s.why}", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
