"""Operations on a real Prefect server, end to end (slow: a few minutes; marked e2e, run in CI).

`prefect server start` on loopback with its own home, `salesops setup` (pool, rate limit, Secret
block), `prefect deploy --all` from prefect.yaml, two process workers, two runs of
reconcile/every-10-minutes triggered together with `prefect deployment run` and, meanwhile, a
`salesops reconcile` with PREFECT_API_URL set, all against the Sheets stand-in and sharing its rate
limit. Every process started here is killed (its whole process group) in a finally.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from itertools import combinations, pairwise
from pathlib import Path

import httpx
import pandas as pd
import pytest

from flows.pipeline import run
from flows.sources import sender
from tasks.demo_data import make_team_workbook
from tasks.mapping import load_mapping
from tasks.workbooks.google import open_google
from tests.sheets_standin import API_METHODS, SheetsStandin, write_service_account_file

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-20T10:00+09:00"  # inside the deployment's business hours (09:00-21:00 Tokyo)
PER_MINUTE = 30  # the test's Sheets rate limit: one request every 2 s
JITTER = 1.0  # s: a request reaches the stand-in a moment after taking its slot (the first one fetches a token)
SERVER_TIMEOUT = 300  # s: measured 60-80 s on a loaded 2-core machine
RUN_TIMEOUT = 360
PROCESS_SPACE = {"PREFECT_", "SALESOPS_"}  # taken from the caller's environment by no process here
PYTHON = sys.executable
SALESOPS = [PYTHON, "-c", "from flows.cli import main; main()"]
PREFECT = [PYTHON, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Long-running children, each in its own process group (a server's or worker's own children too)."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it until killed
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.started[name] = proc
        return proc

    def finish(self, name: str, timeout: float = 240) -> str:
        """Wait for a command to end; its output, or the test fails showing it."""
        code = self.started[name].wait(timeout=timeout)
        assert code == 0, f"{name} exited {code}:\n{self.tail(name)}"
        return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def tail(self, name: str, lines: int = 40) -> str:
        text = (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        """SIGTERM each live group (a server's or worker's children go with it), SIGKILL what stays."""
        live = [proc for proc in self.started.values() if proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the group still holds
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def wait_healthy(api: str, server: subprocess.Popen, procs: Processes) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited:\n{procs.tail('server')}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                return
        time.sleep(1)
    pytest.fail(f"prefect server not healthy after {SERVER_TIMEOUT} s:\n{procs.tail('server')}")


def states_of(client: httpx.Client, run_id: str) -> list[dict]:
    answer = client.get("/flow_run_states/", params={"flow_run_id": run_id})
    answer.raise_for_status()
    return sorted(answer.json(), key=lambda s: s["timestamp"])


def wait_final(client: httpx.Client, run_ids: list[str]) -> dict[str, dict]:
    deadline = time.monotonic() + RUN_TIMEOUT
    runs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        runs = {i: client.get(f"/flow_runs/{i}").json() for i in run_ids}
        if all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs.values()):
            return runs
        time.sleep(2)
    pytest.fail(f"flow runs not finished after {RUN_TIMEOUT} s: {[(i, r['state_type']) for i, r in runs.items()]}")


def conforming(stamps: list[float], per_minute: int, jitter: float) -> bool:
    """No stretch of time holds more requests than the limit lets through (1 slot, per_minute/60 refilled a second).

    From any request i to any later request j, the j - i requests after i needed (j - i) refills, so at
    least (j - i) * 60 / per_minute seconds, less the arrival jitter: this holds for a minute's window
    as for any other, and is what a strict rate limit of `per_minute` guarantees.
    """
    return all(stamps[j] - stamps[i] + jitter >= (j - i) * 60 / per_minute
               for i, j in combinations(range(len(stamps)), 2))


def busiest_minute(stamps: list[float]) -> int:
    return max((sum(1 for t in stamps if s <= t < s + 60) for s in stamps), default=0)


def sheet(standin: SheetsStandin, spreadsheet_id: str, titles: list[str]) -> dict[str, list[list]]:
    """Every tab's values, the change log's run id masked (it names the run, which differs)."""
    out = {}
    for title in titles:
        with contextlib.suppress(KeyError):
            rows = [list(r) for r in standin.tab_values(spreadsheet_id, title)]
            if rows and "実行ID" in rows[0]:
                col = rows[0].index("実行ID")
                for r in rows[1:]:
                    r[col] = "<run>"
            out[title] = rows
    return out


def test_deployed_reconcile_runs_on_two_workers_without_overlap_within_the_sheets_quota(tmp_path):
    began = time.monotonic()
    measured: dict[str, float] = {}
    mapping = load_mapping()
    titles = [spec.title for spec in mapping.tabs.values()]
    book_file = make_team_workbook(tmp_path / "team.xlsx", 20, seed=7, now=pd.Timestamp(NOW).to_pydatetime())

    arrivals: list[tuple[str, float]] = []  # (phase, monotonic time) of each Sheets API request
    phase = ["local"]
    standin = SheetsStandin().start()
    for verb in API_METHODS:
        standin.before(verb, lambda _s: arrivals.append((phase[0], time.monotonic())), once=False)
    for sid in ("e2e-prefect", "e2e-local", "e2e-cli"):
        standin.load_xlsx(sid, book_file)
    key_file = write_service_account_file(tmp_path / "key.json", standin.url)
    initial = sheet(standin, "e2e-prefect", titles)

    # the reference: the same workbook and clock, in-process, no Prefect (and no rate limit)
    local_book = open_google("e2e-local", credentials=str(key_file), endpoint=standin.url, mapping=mapping)[0]
    local = run(local_book, mapping, pd.Timestamp(NOW), sender())
    assert local.report.cells_written > 0

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not any(k.startswith(p) for p in PROCESS_SPACE)}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",  # no scheduled run may touch the sheet meanwhile
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    procs = Processes(tmp_path)
    try:
        t = time.monotonic()
        server = procs.start("server", [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env)
        wait_healthy(api, server, procs)
        measured["server start"] = time.monotonic() - t

        # before setup the server has no Sheets rate limit: a tracked run fails before its first request
        t = time.monotonic()
        phase[0] = "no limit"
        command_line = [*SALESOPS, "reconcile", "--spreadsheet", "e2e-cli", "--credentials", str(key_file),
                        "--sheets-endpoint", standin.url, "--now", NOW]
        procs.start("no-limit", command_line, env)
        assert procs.started["no-limit"].wait(timeout=RUN_TIMEOUT) == 2, procs.tail("no-limit")
        assert "no rate limit 'sheets-api'" in procs.tail("no-limit"), procs.tail("no-limit")
        assert [p for p, _ in arrivals if p == "no limit"] == []
        measured["refused run without the limit"] = time.monotonic() - t
        phase[0] = "prefect"

        t = time.monotonic()
        setup = [*SALESOPS, "setup", "--requests-per-minute", str(PER_MINUTE), "--credentials", str(key_file)]
        procs.start("setup", setup, env)
        procs.finish("setup")
        measured["setup"] = time.monotonic() - t

        t = time.monotonic()
        procs.start("setup-again", setup, env)  # idempotent: a second run changes nothing and fails on nothing
        deploy_env = env | {"SALESOPS_HOME": str(ROOT), "SALESOPS_SPREADSHEET": "e2e-prefect", "SALESOPS_WORKBOOK": ""}
        procs.start("deploy", [*PREFECT, "--no-prompt", "deploy", "--all"], deploy_env)
        procs.finish("deploy")
        procs.finish("setup-again")
        measured["deploy (and setup again)"] = time.monotonic() - t

        worker_env = env | {"SALESOPS_SHEETS_ENDPOINT": standin.url}  # the key comes from the Secret block
        for name in ("worker-1", "worker-2"):
            procs.start(name, [*PREFECT, "worker", "start", "--pool", "salesops", "--name", name], worker_env)

        t = time.monotonic()
        trigger = [*PREFECT, "deployment", "run", "reconcile/every-10-minutes", "-p", f"now={NOW}"]
        for name in ("trigger-1", "trigger-2"):
            procs.start(name, trigger, env)
        # meanwhile the command line with PREFECT_API_URL set: the same reconcile as a tracked flow run,
        # in its own process, sharing the rate limit with the workers' runs
        procs.start("command-line", command_line, env)
        outputs = [procs.finish(name, 120) for name in ("trigger-1", "trigger-2")]
        run_ids = [m[1] for out in outputs for m in [re.search(r"UUID: ([0-9a-f-]{36})", out)] if m]
        assert len(run_ids) == 2, outputs

        with httpx.Client(base_url=api, timeout=30) as client:
            runs = wait_final(client, run_ids)
            measured["trigger to both final"] = time.monotonic() - t
            states = {i: states_of(client, i) for i in run_ids}
            procs.finish("command-line", RUN_TIMEOUT)
            measured["trigger to command line done"] = time.monotonic() - t
            adhoc = client.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"is_null_": True}}}).json()
            deployed = client.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"is_null_": False}}}).json()
            artifacts = client.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": run_ids}}}).json()
            limit = client.get("/v2/concurrency_limits/sheets-api").json()
            workers = client.post("/work_pools/salesops/workers/filter", json={}).json()
    finally:
        procs.stop_all()
        standin.stop()

    logs = "\n".join(procs.tail(n, 60) for n in ("worker-1", "worker-2"))
    assert sorted(r["id"] for r in deployed) == sorted(run_ids), deployed  # no scheduled run touched the sheet
    final = {i: r["state_type"] for i, r in runs.items()}
    assert set(final.values()) <= {"COMPLETED", "CANCELLED"}, (final, logs)
    completed = [i for i, s in final.items() if s == "COMPLETED"]
    assert completed, (final, logs)
    for i, s in final.items():
        if s == "CANCELLED":  # CANCEL_NEW: refused while the other held the deployment's slot, never started
            assert "concurrency limit" in (runs[i]["state"]["message"] or "").lower(), runs[i]["state"]
            assert "RUNNING" not in [st["type"] for st in states[i]], states[i]

    # did not overlap: every run that started ended before another started
    spans = {}
    for i in run_ids:
        running = [pd.Timestamp(st["timestamp"]) for st in states[i] if st["type"] == "RUNNING"]
        if running:
            spans[i] = (running[0], pd.Timestamp(states[i][-1]["timestamp"]))
    assert len(spans) == len(completed), (spans, final)
    for (a, (a0, a1)), (b, (b0, b1)) in combinations(spans.items(), 2):
        assert a1 <= b0 or b1 <= a0, f"runs {a} {a0}..{a1} and {b} {b0}..{b1} overlapped"

    # the sheet ends as the in-process run left the reference copy
    after = sheet(standin, "e2e-prefect", titles)
    assert after != initial
    assert after == sheet(standin, "e2e-local", titles)
    assert sorted(r["state_type"] for r in adhoc) == ["COMPLETED", "FAILED"], adhoc  # the refused one, then this one
    assert sheet(standin, "e2e-cli", titles) == after

    # the Sheets quota: strict rate limit shared through the server
    assert limit["limit"] == 1 and limit["slot_decay_per_second"] == pytest.approx(PER_MINUTE / 60), limit
    stamps = [at for p, at in arrivals if p == "prefect"]
    local_stamps = [at for p, at in arrivals if p == "local"]
    assert len(stamps) >= 8, stamps  # the deployment's run and the command line's, together
    gaps = [round(b - a, 2) for a, b in pairwise(stamps)]
    assert conforming(stamps, PER_MINUTE, JITTER), f"requests faster than {PER_MINUTE}/min: gaps {gaps} s"
    assert busiest_minute(stamps) <= PER_MINUTE
    assert not conforming(local_stamps, PER_MINUTE, JITTER)  # the check bites: the unlimited run breaks it

    # artifacts of every completed run: the summary and the table of changes
    kinds = {(a["flow_run_id"], a["key"], a["type"]) for a in artifacts}
    first = min(completed, key=lambda i: spans[i][0])
    assert (first, "reconcile-summary", "markdown") in kinds, kinds
    assert (first, "reconcile-changes", "table") in kinds, kinds
    for i in completed:
        assert (i, "reconcile-summary", "markdown") in kinds, kinds
    summary = next(a for a in artifacts if a["flow_run_id"] == first and a["key"] == "reconcile-summary")
    assert f"{local.report.cells_written} cells" in summary["data"], summary["data"]
    table = next(a for a in artifacts if a["flow_run_id"] == first and a["key"] == "reconcile-changes")
    rows = json.loads(table["data"])
    assert rows and all(re.search(r"/d/e2e-prefect/edit#gid=\d+$", r["sheet"]) for r in rows), rows[:3]
    assert len({w["name"] for w in workers}) == 2, workers

    measured["total"] = time.monotonic() - began
    run_times = {i[:8]: round(r["total_run_time"], 1) for i, r in runs.items()}
    print(f"\ne2e measured (s): {json.dumps({k: round(v, 1) for k, v in measured.items()})}; "
          f"final {final}; run time {run_times}; {len(stamps)} Sheets requests, gaps {gaps} s, "
          f"busiest minute {busiest_minute(stamps)} (limit {PER_MINUTE}); local run gaps "
          f"{[round(b - a, 2) for a, b in pairwise(local_stamps)]}")
