"""The optional L-Step REST client, against a local stand-in server this test starts on loopback."""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.check import check
from tasks.lstep_api import LStepClient, LStepError, apply_operations
from tasks.workbooks.port import RunInfo, apply_plan
from tests.conftest import NOW, booking, customer, tab_records, write_book
from tests.test_tags import AT, HELD, SEMINAR, book_of, open_ops, ops, rules_plan, step

TOKEN = "test-token"
U1, U2, U3 = "U" + "1" * 32, "U" + "2" * 32, "U" + "3" * 32


class FakeLStep:
    """Just enough of api.lineml.jp/v2/api: /tags (paged) and /friends/{id}/tags, Bearer auth."""

    def __init__(self):
        self.tags = {"101": SEMINAR, "102": HELD, "103": "VIP"}
        self.friends: dict[str, set[str]] = {U1: set(), U2: {"101", "103"}}
        self.log: list[tuple[str, str, dict | None, float]] = []
        self.faults: list[tuple[str, int]] = []  # (path prefix, status) answered once each, in order
        self.retry_after = "0"  # seconds, on every fault
        self.clock = time.monotonic  # what each logged request is stamped with
        self.lock = threading.Lock()

    def handle(self, method: str, target: str, auth: str, body: dict | None) -> tuple[int, dict, dict]:
        url = urlsplit(target)
        path = unquote(url.path).removeprefix("/v2/api")
        with self.lock:
            self.log.append((method, path, body, self.clock()))
            if auth != f"Bearer {TOKEN}":
                return 401, {"message": "Unauthenticated."}, {}
            for i, (prefix, status) in enumerate(self.faults):
                if path.startswith(prefix):
                    del self.faults[i]
                    return status, {"message": "Too Many Attempts."}, {"Retry-After": self.retry_after}
            if method == "GET" and path == "/tags":
                items = sorted(self.tags.items())
                start = int(parse_qs(url.query).get("cursor", ["0"])[0])
                page = [{"id": int(k), "name": v} for k, v in items[start:start + 2]]
                more = start + 2 < len(items)
                return 200, {"data": page, "next_cursor": str(start + 2) if more else None}, {}
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "friends" and parts[2] == "tags" and method in ("POST", "DELETE"):
                friend = self.friends.get(parts[1])
                if friend is None:
                    return 404, {"message": "friend not found"}, {}
                ids = {str(t) for t in (body or {}).get("tag_ids", [])}
                if method == "POST":
                    friend |= ids
                else:
                    friend -= ids
                return 200, {"data": {"id": parts[1]}}, {}
            return 404, {"message": "no route"}, {}


@pytest.fixture
def lstep():
    fake = FakeLStep()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload, headers = fake.handle(self.command, self.path, self.headers.get("Authorization", ""), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v2/api"
    yield fake
    server.shutdown()
    server.server_close()


def _team(mapping):
    book = book_of(
        [customer("C1", LINEユーザーID=U1), customer("C2", LINEユーザーID=U2, タグ=f"VIP、{SEMINAR}"),
         customer("C3", LINEユーザーID=U3)],
        [booking("R1", "C1", AT), booking("R2", "C2", AT, "キャンセル"), booking("R3", "C3", AT)],
    )
    step(book, mapping)
    return book


def _apply(book, mapping, client):
    plan, outcomes = apply_operations(check(book.read(), mapping), mapping, client, NOW)
    apply_plan(book, plan, mapping, RunInfo("api", NOW))
    return plan, outcomes


def test_tag_operations_are_applied_and_each_result_recorded(mapping, lstep):
    book = _team(mapping)
    with LStepClient(TOKEN, lstep.url) as client:
        plan, outcomes = _apply(book, mapping, client)
    assert lstep.friends[U1] == {"101"} and lstep.friends[U2] == {"103"}  # VIP, not managed, untouched
    assert {(m, p) for m, p, _, _ in lstep.log} >= {
        ("GET", "/tags"), ("POST", f"/friends/{U1}/tags"), ("DELETE", f"/friends/{U2}/tags")}
    assert [b for m, p, b, _ in lstep.log if p == f"/friends/{U1}/tags"] == [{"tag_ids": [101]}]
    done = {o["お客様番号"]: o for o in ops(book) if o["操作"] in ("タグ追加", "タグ削除")}
    for cid in ("C1", "C2"):
        assert done[cid]["対応済"] is True and done[cid]["理由"].endswith("（API適用）")
        assert done[cid]["対応日時"] is not None
    assert done["C3"]["対応済"] is False and "（API失敗: 404 friend not found）" in done["C3"]["理由"]
    assert sorted(o.ok for o in outcomes) == [False, True, True]
    assert not [o for o in open_ops(book) if o["お客様番号"] in ("C1", "C2") and o["操作"] != "メッセージ送信"]
    assert not rules_plan(book, mapping)  # the rules agree with what the API did

    calls = len(lstep.log)
    with LStepClient(TOKEN, lstep.url) as client:
        plan, outcomes = _apply(book, mapping, client)
    assert [o.operation_id for o in outcomes] == [done["C3"]["操作ID"]]  # only what is still open
    assert not plan  # the same failure, already noted
    assert len(lstep.log) - calls == 3  # GET /tags (two pages) and C3 once more


def test_tag_ids_from_the_mapping_skip_the_lookup(mapping, lstep):
    book = _team(mapping)
    api = mapping.tags.api.model_copy(update={"tag_ids": {SEMINAR: 101}})
    custom = mapping.model_copy(update={"tags": mapping.tags.model_copy(update={"api": api})})
    with LStepClient(TOKEN, lstep.url) as client:
        _apply(book, custom, client)
    assert not [p for _, p, _, _ in lstep.log if p == "/tags"]


class VirtualClock:
    """The client's clock and sleep: time passes only when the client waits, so spacing is exact."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_too_many_requests_is_retried_after_retry_after(mapping, lstep):
    lstep.faults = [("/friends", 429), ("/friends", 503)]
    lstep.retry_after = "2"
    clock = VirtualClock()
    with LStepClient(TOKEN, lstep.url, clock=clock, sleep=clock.sleep) as client:
        client.add_tags(U1, ["102"])
    assert lstep.friends[U1] == {"102"}
    assert [p for _, p, _, _ in lstep.log] == [f"/friends/{U1}/tags"] * 3
    assert clock.sleeps == [2.0, 2.0]  # Retry-After, each time (it is longer than the pacing interval)


def test_a_refused_token_stops_the_apply(mapping, lstep):
    book = _team(mapping)
    with LStepClient("wrong", lstep.url) as client, pytest.raises(LStepError) as caught:
        apply_operations(check(book.read(), mapping), mapping, client, NOW)
    assert caught.value.status == 401 and caught.value.fatal
    assert len(lstep.log) == 1


def test_requests_are_spaced_to_the_rate_limit(lstep):
    clock = VirtualClock()
    lstep.clock = clock  # the server stamps each request with the client's clock
    with LStepClient(TOKEN, lstep.url, requests_per_second=20, clock=clock, sleep=clock.sleep) as client:
        for _ in range(5):
            client.add_tags(U1, ["101"])
    times = [t for _, _, _, t in lstep.log]
    assert len(times) == 5 and times[0] == 0
    assert [round(b - a, 9) for a, b in itertools.pairwise(times)] == [0.05] * 4


def test_the_command_line_applies_and_records(mapping, lstep, tmp_path):
    book = _team(mapping)
    path = write_book(tmp_path / "t.xlsx", book.tabs)
    runner = CliRunner()
    result = runner.invoke(app, ["apply-operations", "--workbook", str(path), "--now", "2026-11-20T10:30+09:00"],
                           env={"LSTEP_API_TOKEN": TOKEN, "LSTEP_API_BASE_URL": lstep.url})
    assert result.exit_code == 0, result.output
    rows = {r["お客様番号"]: r for r in tab_records(path, "L-Step操作") if r["操作"] == "タグ追加"}
    assert rows["C1"]["対応済"] is True and str(rows["C1"]["対応日時"]).startswith("2026-11-20 10:30")
    result = runner.invoke(app, ["apply-operations", "--workbook", str(path)], env={"LSTEP_API_TOKEN": ""})
    assert result.exit_code == 2 and "LSTEP_API_TOKEN" in result.output
