"""The `salesops` command line. Problems in the input are plain messages, never stack traces."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from tasks.check import InputError
from tasks.files import CannotWrite
from tasks.mapping import MappingError, load_mapping
from tasks.notify import RouteConfigError
from tasks.workbooks.credentials import CredentialsError
from tasks.workbooks.google import SheetsError
from tasks.workbooks.local import WorkbookFull
from tasks.workbooks.xlsx_file import NotAWorkbook

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, wherever the output goes (a log, a pipe)
EXPECTED = (MappingError, InputError, FileNotFoundError, SheetsError, WorkbookFull, NotAWorkbook, CannotWrite,
            CredentialsError, RouteConfigError)  # plain words
ROUTES_HELP = "Notification routing: YAML/TOML, 宛先 -> Apprise URLs (also SALESOPS_ROUTE_<NAME>=url). Default: the console."


def parse_now(text: str | None) -> pd.Timestamp:
    from flows.pipeline import parse_clock

    try:
        return parse_clock(text, "--now ")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


WORKBOOK = typer.Option(None, "--workbook", help="A local .xlsx workbook (or --spreadsheet).")
SPREADSHEET = typer.Option(
    None, "--spreadsheet", help="Google spreadsheet id or URL (the main one); ALIAS=ID for a spreadsheet "
    "the mappings name (e.g. links=ID). Repeatable.")
CREDENTIALS = typer.Option(
    None, "--credentials", help="Service-account key: a JSON file, env:VAR or prefect-secret:BLOCK "
    "(default: the JSON in $SALESOPS_GOOGLE_CREDENTIALS).")
ENDPOINT = typer.Option(
    None, "--sheets-endpoint", envvar="SALESOPS_SHEETS_ENDPOINT",
    help="Another Sheets API server (a stand-in); the token flow goes there too.")
NOW = typer.Option(None, "--now", help="The run's clock, e.g. 2026-11-20T10:00+09:00 (default: now).")
MAPPINGS = typer.Option(None, "--mappings", help="Directory of mapping YAML files (default: the shipped ones).")
ROUTES = typer.Option(None, "--routes", envvar="SALESOPS_ROUTES", help=ROUTES_HELP)


@dataclass(frozen=True)
class Source:
    """Where the sheets are, in the words the flows take as parameters (no key, only where it is)."""

    workbook: str | None
    spreadsheet: str | None
    credentials: str | None
    sheets_endpoint: str | None

    @classmethod
    def given(cls, workbook: Path | None, spreadsheet: list[str] | None, credentials: str | None,
              endpoint: str | None) -> Source:
        if bool(workbook) == bool(spreadsheet):
            _fail("give --workbook PATH or --spreadsheet ID")
        return cls(str(workbook) if workbook else None, ",".join(spreadsheet) if spreadsheet else None,
                   credentials, endpoint if spreadsheet else None)

    def open(self, mapping):
        from flows.sources import open_book

        return open_book(self.workbook, self.spreadsheet, credentials=self.credentials,
                         endpoint=self.sheets_endpoint, mapping=mapping)[0]


@app.command()
def reconcile(
    workbook: Path = WORKBOOK,
    spreadsheet: list[str] = SPREADSHEET,
    credentials: str = CREDENTIALS,
    sheets_endpoint: str = ENDPOINT,
    now: str = NOW,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan as a diff; write nothing."),
    baseline: bool = typer.Option(False, "--baseline", help="Adoption run: fill everything, notify nobody "
                                  "(but 運営 of a nearly full workbook)."),
    mappings: Path = MAPPINGS,
    routes: Path = ROUTES,
) -> None:
    """Read the sheets, reconcile them with the rules, write the difference, tell people."""
    source = Source.given(workbook, spreadsheet, credentials, sheets_endpoint)
    run_and_report("reconcile", source, parse_now(now), dry_run=dry_run, baseline=baseline, mappings=mappings,
                   routes=routes)


@app.command()
def merge(
    workbook: Path = WORKBOOK,
    spreadsheet: list[str] = SPREADSHEET,
    credentials: str = CREDENTIALS,
    sheets_endpoint: str = ENDPOINT,
    now: str = NOW,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the merge plan as a diff; write nothing."),
    mappings: Path = MAPPINGS,
    routes: Path = ROUTES,
) -> None:
    """Merge the duplicate customers staff approved in 重複候補 (統合可 and 承認 ticked). Irreversible."""
    source = Source.given(workbook, spreadsheet, credentials, sheets_endpoint)
    run_and_report("merge", source, parse_now(now), dry_run=dry_run, mappings=mappings, routes=routes)


@app.command()
def digest(
    workbook: Path = WORKBOOK,
    spreadsheet: list[str] = SPREADSHEET,
    credentials: str = CREDENTIALS,
    sheets_endpoint: str = ENDPOINT,
    now: str = NOW,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the digest notices; write and send nothing."),
    mappings: Path = MAPPINGS,
    routes: Path = ROUTES,
) -> None:
    """Send each person their open items (alerts, L-Step操作, payment links) in one message: the end of the day."""
    source = Source.given(workbook, spreadsheet, credentials, sheets_endpoint)
    run_and_report("digest", source, parse_now(now), dry_run=dry_run, mappings=mappings, routes=routes)


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
    run_and_report("reconcile", Source(str(path), None, None, None), stamp, dry_run=False, mappings=None, routes=routes)
    console.print(f"open it: {path.resolve()}")


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
    kind: str, source: Source, now: pd.Timestamp, *, dry_run: bool, mappings: Path | None,
    routes: Path | None = None, baseline: bool = False,
) -> None:
    """In-process with no Prefect server; with PREFECT_API_URL, the same flow as a tracked run (in this process)."""
    from flows.digest import digest_flow, run_digest
    from flows.merge import merge_flow, run_merge
    from flows.pipeline import run
    from flows.reconcile import reconcile_flow
    from flows.report import print_summary
    from flows.sources import SourceError, sender

    try:
        mapping = load_mapping(mappings)
        if os.environ.get("PREFECT_API_URL"):
            flow = {"reconcile": reconcile_flow, "merge": merge_flow, "digest": digest_flow}[kind]
            extra = {"baseline": baseline} if kind == "reconcile" else {}
            summary = flow(**asdict(source), now=now.isoformat(), dry_run=dry_run, **extra,
                           mappings=str(mappings) if mappings else None, routes=str(routes) if routes else None)
        else:
            book, send = source.open(mapping), sender(routes)
            if kind == "merge":
                summary = run_merge(book, mapping, now, send, dry_run=dry_run)
            elif kind == "digest":
                summary = run_digest(book, mapping, now, send, dry_run=dry_run)
            else:
                summary = run(book, mapping, now, send, dry_run=dry_run, baseline=baseline)
    except (*EXPECTED, SourceError) as exc:
        _fail(str(exc))
    print_summary(summary, mapping, console, show_diff=dry_run)


@app.command("export-operations")
def export_operations(
    workbook: Path = WORKBOOK,
    spreadsheet: list[str] = SPREADSHEET,
    credentials: str = CREDENTIALS,
    sheets_endpoint: str = ENDPOINT,
    out: Path = typer.Option(None, help="The CSV file to write."),
    encoding: str = typer.Option("utf-8-sig", help="utf-8-sig (UTF-8 with BOM) or cp932."),
    mappings: Path = MAPPINGS,
) -> None:
    """Write the open タグ追加 / タグ削除 of L-Step操作 as a CSV for the LINE tool's bulk tag change."""
    from tasks.check import check
    from tasks.lstep_export import ENCODINGS, ExportError, build_export, write_export

    source = Source.given(workbook, spreadsheet, credentials, sheets_endpoint)
    if out is None:
        _fail("give --out FILE")
    if encoding not in ENCODINGS:
        _fail(f"--encoding must be one of {', '.join(ENCODINGS)}")
    try:
        mapping = load_mapping(mappings)
        export = build_export(check(source.open(mapping).read(), mapping), mapping)
        write_export(out, export, encoding)
    except (*EXPECTED, ExportError) as exc:
        _fail(str(exc))
    console.print(f"{out}: {len(export)} customers, {len(export.operations)} operations ({encoding})")
    for op_id, why in export.skipped:
        err.print(f"skipped {op_id}: {why}", highlight=False)


@app.command("apply-operations")
def apply_operations(
    workbook: Path = WORKBOOK,
    spreadsheet: list[str] = SPREADSHEET,
    credentials: str = CREDENTIALS,
    sheets_endpoint: str = ENDPOINT,
    base_url: str = typer.Option(None, envvar="LSTEP_API_BASE_URL", help="API base URL (default: the mapping's)."),
    now: str = NOW,
    mappings: Path = MAPPINGS,
) -> None:
    """Apply the open タグ追加 / タグ削除 through the L-Step API (token in $LSTEP_API_TOKEN); record each result."""
    from tasks.check import check
    from tasks.lstep_api import LStepClient, LStepError
    from tasks.lstep_api import apply_operations as apply_all
    from tasks.workbooks.port import RunInfo, apply_plan

    source = Source.given(workbook, spreadsheet, credentials, sheets_endpoint)
    token = os.environ.get("LSTEP_API_TOKEN")  # never an option: a command line shows in ps and shell history
    if not token:
        _fail("no L-Step API token (LSTEP_API_TOKEN): the L-Step操作 tab is the interface")
    stamp = parse_now(now)
    try:
        mapping = load_mapping(mappings)
        book = source.open(mapping)
        frames = check(book.read(), mapping)
        api = mapping.tags.api
        with LStepClient(token, base_url or api.base_url, requests_per_second=api.requests_per_second) as client:
            plan, outcomes = apply_all(frames, mapping, client, stamp)
        report = apply_plan(book, plan, mapping, RunInfo(f"{stamp:%Y%m%d-%H%M}-lstep", stamp))
    except (*EXPECTED, LStepError) as exc:
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


if __name__ == "__main__":  # python -m flows.cli, as the salesops command
    main()
