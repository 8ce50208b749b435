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
) -> None:
    """Read the sheets, reconcile them with the rules, write the difference, tell people."""
    if workbook is None:
        _fail("give --workbook PATH")
    run_and_report(workbook, parse_now(now), dry_run=dry_run, baseline=baseline, mappings=mappings)


@app.command()
def demo(
    dir: Path = typer.Option(Path("demo"), "--dir", help="Where to write the demo workbook."),
    customers: int = typer.Option(300, help="How many synthetic customers."),
    now: str = typer.Option("2026-11-20T10:00+09:00", help="The demo's clock."),
    seed: int = typer.Option(7),
) -> None:
    """Write a realistic synthetic workbook and run the reconcile on it."""
    from tasks.demo_data import make_team_workbook

    stamp = parse_now(now)
    dir.mkdir(parents=True, exist_ok=True)
    path = make_team_workbook(dir / "team.xlsx", customers, seed=seed, now=stamp.to_pydatetime())
    console.print(f"demo workbook: {path} ({customers} synthetic customers)")
    run_and_report(path, stamp, dry_run=False, baseline=False, mappings=None)
    console.print(f"open it: {path.resolve()}")


def run_and_report(workbook: Path, now: pd.Timestamp, *, dry_run: bool, baseline: bool, mappings: Path | None) -> None:
    from flows.pipeline import run
    from flows.report import print_summary
    from tasks.tell import console as console_send
    from tasks.workbooks.local import LocalWorkbook

    try:
        mapping = load_mapping(mappings)
        book = LocalWorkbook(workbook)
        if os.environ.get("PREFECT_API_URL"):
            from flows.reconcile import reconcile_flow

            summary = reconcile_flow(str(workbook), now.isoformat(), dry_run, baseline)
        else:
            summary = run(book, mapping, now, console_send, dry_run=dry_run, baseline=baseline)
    except (MappingError, InputError, FileNotFoundError) as exc:
        _fail(str(exc))
    print_summary(summary, mapping, console, show_diff=dry_run)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
