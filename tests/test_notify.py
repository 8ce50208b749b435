"""Notifications through Apprise to a local HTTP receiver: routing, one message, once, retries.

The receiver is a real HTTP server on loopback started by the test. json:// and form:// point at
it directly; the LINE and Slack plugins have fixed endpoints, so the test points their class
attribute at it (`LinePush.notify_url`, `NotifySlack.webhook_url`): the request Apprise builds is
the one LINE or Slack would get. The receiver plays LINE's retry-key rule: a push whose
X-Line-Retry-Key was already accepted gets 409 with X-Line-Accepted-Request-Id.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pandas as pd
import pytest
from apprise.plugins.slack import NotifySlack

from flows.pipeline import run
from tasks.notify import (
    DeliveryError,
    LinePush,
    RouteConfigError,
    Router,
    Routes,
    Unroutable,
    load_routes,
    retry_key,
    sender,
    split_text,
)
from tasks.outbox import mask
from tasks.tell import console
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import NOW, STAFF_HEADERS, booking, customer, tab_records, team_tabs, write_book
from tests.test_payment_links import links_only

LINE_TOKEN = "AbC+dEf/GhI123=="  # channel tokens carry / + =
GROUP = "C0123456789abcdef0123456789abcdef"
HELD = dt.datetime(2026, 11, 19, 14, 0)


class Receiver:
    """What arrived, by path; `fail(path_prefix, n)` answers the next n requests there with 500."""

    def __init__(self):
        self.requests: list[dict] = []
        self.failures: dict[str, int] = {}
        self.accepted_keys: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                receiver.handle(self, body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, prefix: str, times: int = 1):
        self.failures[prefix] = times

    def handle(self, h: BaseHTTPRequestHandler, body: str):
        with self.lock:
            record = {"path": h.path, "headers": dict(h.headers.items()), "body": body, "status": 200}
            self.requests.append(record)
            prefix = next((p for p in self.failures if h.path.startswith(p) and self.failures[p] > 0), None)
            if prefix is not None:
                self.failures[prefix] -= 1
                record["status"] = 500
                return self._answer(h, 500, b'{"message":"boom"}')
            if h.path.startswith("/v2/bot/message/push"):
                key = h.headers.get("X-Line-Retry-Key")
                if key in self.accepted_keys:
                    record["status"] = 409
                    return self._answer(h, 409, b'{"message":"The retry key is already accepted"}',
                                        {"X-Line-Accepted-Request-Id": "req-1"})
                if key:
                    self.accepted_keys.add(key)
                return self._answer(h, 200, b"{}")
            if h.path.startswith("/slack"):
                return self._answer(h, 200, b"ok")  # Slack's webhook answers the literal text ok
            return self._answer(h, 200, b"{}")

    @staticmethod
    def _answer(h, status, payload, headers=None):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def at(self, prefix: str, status: int | None = 200) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(prefix) and (status is None or r["status"] == status)]

    def line_texts(self, status: int | None = 200) -> list[str]:
        return ["\n".join(m["text"] for m in json.loads(r["body"])["messages"]) for r in self.at("/v2/bot/message/push", status)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setattr(LinePush, "notify_url", f"http://{r.base}/v2/bot/message/push")
    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://{r.base}/slack")
    yield r
    r.close()


@pytest.fixture
def env(receiver):
    """Routes the way a team configures them: channel names in 担当者.通知先, URLs and secrets in the environment."""
    return {
        "LINE_TOKEN": LINE_TOKEN,
        "SALESOPS_ROUTE_LINKS": f"line://${{LINE_TOKEN}}/{GROUP}",  # 高橋 (決済リンク作成)
        "SALESOPS_ROUTE_OPS": "slack://T000/B000/XXXXXXXX",  # 田中 (運営)
        "SALESOPS_ROUTE_SATO": f"json://{receiver.base}/hook/sato",  # 佐藤 (営業)
        "SALESOPS_ROUTE_SUZUKI": f"form://{receiver.base}/hook/suzuki",  # 鈴木 (営業)
    }


def slack_text(request: dict) -> str:
    """Apprise's Slack webhook payload: the body is the attachment's text."""
    return json.loads(request["body"])["attachments"][0]["text"]


def won(bid, cid="C001", salesperson="佐藤", **kw):
    fields = {"結果": "成約", "プラン": "スタンダード", "お礼LINE": "TRUE", "営業担当": salesperson, **kw}
    return booking(bid, cid, HELD, "来店済み", **fields)


def workbook(tmp_path, bookings):
    customers = [customer("C001", 電話番号="090-1234-5678"), customer("C002", "鈴木", "花子", 営業担当="鈴木")]
    return write_book(tmp_path / "team.xlsx", team_tabs(customers, bookings))


def go(path, mapping, send, now=NOW, full=False):
    """A run; by default with the payment-link rule and エラー only (the other rules' cost, not their notices)."""
    return run(LocalWorkbook(path), mapping, now, send, plan_with=None if full else links_only)


def states(path) -> dict[str, tuple]:
    return {r["通知ID"]: (r["状態"], r["試行回数"], r["エラー"]) for r in tab_records(path, "通知")}


# --------------------------------------------------------------------------- configuration


def test_routes_from_yaml_toml_and_environment_with_secrets(tmp_path):
    (tmp_path / "routes.yaml").write_text(
        "sender: 営業通知\ndefault: console://\nroutes:\n"
        "  ops: line://${LINE_TOKEN}/" + GROUP + "\n"
        "  sato: [\"json://localhost/a\", \"json://localhost/b\"]\n"
        "  links: forms://api.chatwork.com/v2/rooms/123/messages?+X-ChatWorkToken=${secret:chatwork}&:message=body\n",
        encoding="utf-8")
    routes = load_routes(tmp_path / "routes.yaml", {"LINE_TOKEN": LINE_TOKEN, "SALESOPS_ROUTE_SATO": "json://h/x,json://h/y"},
                         secret=lambda name: {"chatwork": "cw-token-123"}[name])
    assert routes.sender == "営業通知" and routes.default == ("console://",)
    assert routes.get("OPS") == (f"line://AbC%2BdEf%2FGhI123%3D%3D/{GROUP}",)  # secrets are percent-encoded
    assert routes.get("sato") == ("json://h/x", "json://h/y")  # the environment wins
    assert "cw-token-123" in routes.get("links")[0] and "cw-token-123" in routes.secrets
    (tmp_path / "routes.toml").write_text('[routes]\nops = ["json://localhost/ops"]\n', encoding="utf-8")
    assert load_routes(tmp_path / "routes.toml", {}).get("ops") == ("json://localhost/ops",)
    assert load_routes(None, {"SALESOPS_ROUTES": str(tmp_path / "routes.toml")}).get("ops") == ("json://localhost/ops",)


@pytest.mark.parametrize(("text", "env", "match"), [
    ("routes:\n  ops: line://${MISSING}/C1\n", {}, "MISSING is not set"),
    ("routes:\n  ops: chatwork://abc\n", {}, "not a URL Apprise can send to"),
    ("routes: [a, b]\n", {}, "expected keys"),
    ("rutes: {}\n", {}, "unknown keys"),
])
def test_bad_routes_name_the_problem_never_the_secret(tmp_path, text, env, match):
    (tmp_path / "r.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RouteConfigError, match=match):
        load_routes(tmp_path / "r.yaml", env)


def test_nothing_configured_is_the_console(capsys):
    assert sender(None, {}) is console
    Router(Routes())("佐藤", "t", "本文", "k")
    assert "本文" in capsys.readouterr().out


def test_resolution_of_names_roles_channels_and_default():
    staff = pd.DataFrame({"role": ["営業", "運営", "運営", "運営", "営業"], "channel": ["sato", "ops", "ops2", "ops", "https://x"],
                          "active": [True, True, True, False, True]}, index=["佐藤", "田中", "中村", "小林", "加藤"])
    routes = Routes({"sato": ("json://h/s",), "ops": ("json://h/o",), "ops2": ("json://h/o2",), "team": ("json://h/t",)})
    r = Router(routes, staff)
    assert r.resolve("佐藤") == ("json://h/s",)  # a name → its 通知先
    assert r.resolve("運営") == ("json://h/o2", "json://h/o")  # a role → its active holders, each URL once
    assert r.resolve("team") == ("json://h/t",)  # a channel by name
    with pytest.raises(Unroutable, match="有効ではありません"):
        r.resolve("小林")
    with pytest.raises(Unroutable, match="URL"):  # a URL typed into the workbook is refused
        r.resolve("加藤")
    with pytest.raises(Unroutable, match="ありません"):
        r.resolve("誰か")
    assert Router(Routes(routes.routes, default=("json://h/d",)), staff).resolve("誰か") == ("json://h/d",)


# --------------------------------------------------------------------------- transports on loopback


def test_line_push_is_built_as_the_messaging_api_wants(receiver):
    routes = load_routes(None, {"LINE_TOKEN": LINE_TOKEN, "SALESOPS_ROUTE_G": f"line://${{LINE_TOKEN}}/{GROUP}"})
    Router(routes)("g", "決済リンク作成依頼", "本文" + "あ" * 6000, "k1")
    [req] = receiver.at("/v2/bot/message/push")
    assert req["headers"]["Authorization"] == f"Bearer {LINE_TOKEN}"
    assert req["headers"]["X-Line-Retry-Key"] == retry_key("k1", GROUP) == str(uuid.UUID(retry_key("k1", GROUP)))
    payload = json.loads(req["body"])
    assert payload["to"] == GROUP and 2 <= len(payload["messages"]) <= 5  # one push, split into text objects
    assert all(m["type"] == "text" and len(m["text"]) <= 5000 for m in payload["messages"])
    assert payload["messages"][0]["text"].startswith("決済リンク作成依頼")
    Router(routes)("g", "t", "same delivery again", "k1")  # LINE answers 409: already delivered, not a failure
    assert [r["status"] for r in receiver.at("/v2/bot/message/push", None)] == [200, 409]


def test_slack_json_and_chatwork_form_requests(receiver):
    env = {"CW": "cw-token", "SALESOPS_ROUTE_S": "slack://T000/B000/XXXXXXXX",
           "SALESOPS_ROUTE_J": f"json://{receiver.base}/hook/j",
           "SALESOPS_ROUTE_C": f"form://{receiver.base}/v2/rooms/123/messages?+X-ChatWorkToken=${{CW}}"
                               "&:message=body&:title=&:type=&:version="}
    r = Router(load_routes(None, env))
    for name in ("s", "j", "c"):
        r(name, "件名", "本文です", "key-1")
    [slack] = receiver.at("/slack/T000/B000/XXXXXXXX")
    assert slack_text(slack) == "本文です"
    [js] = receiver.at("/hook/j")
    assert json.loads(js["body"])["message"] == "本文です" and js["headers"]["Idempotency-Key"] == "key-1"
    [cw] = receiver.at("/v2/rooms/123/messages")
    assert cw["headers"]["X-ChatWorkToken"] == "cw-token" and parse_qs(cw["body"])["body"] == ["本文です"]


def test_a_5xx_raises_with_apprise_words_and_no_secret(receiver):
    env = {"TOKEN": "s3cr3t-token", "SALESOPS_ROUTE_J": f"json://u:${{TOKEN}}@{receiver.base}/hook/j"}
    receiver.fail("/hook/j")
    with pytest.raises(DeliveryError) as exc:
        Router(load_routes(None, env))("j", "t", "b", "k")
    assert "500" in str(exc.value) and "s3cr3t" not in str(exc.value)


def test_split_text_keeps_within_limits():
    parts = split_text("\n".join(["行" * 100] * 400), 4500, 5)
    assert len(parts) == 5 and all(len(p) <= 4500 for p in parts) and parts[-1].endswith("（続きは『通知』タブ）")
    assert split_text("short", 4500, 5) == ["short"]


# --------------------------------------------------------------------------- whole runs


def test_one_message_per_recipient_and_nothing_twice_across_reruns(tmp_path, mapping, receiver, env):
    path = workbook(tmp_path, [won("R001"), won("R002"), won("R003", "C002", "鈴木"),
                               booking("R004", "C001", "11/25 14:00")])  # an input error: 運営 is told
    router = sender(None, env)
    go(path, mapping, router, full=True)
    texts = receiver.line_texts()
    assert len(texts) == 1  # 高橋: three requests, one LINE push
    assert all(f"R00{i}" in texts[0] for i in (1, 2, 3))
    assert len(receiver.at("/slack")) == 1  # 運営: one message
    first = len(receiver.requests)
    go(path, mapping, router, full=True)
    go(path, mapping, router)
    assert len(receiver.requests) == first  # nothing twice
    assert all(s == "送信済" for s, _, _ in states(path).values())


def test_masked_in_what_arrives(tmp_path, mapping, receiver, env):
    phone = "090-1234-5678"
    path = workbook(tmp_path, [won("R001", プラン=f"電話 {phone} の方")])
    go(path, mapping, sender(None, env))
    [text] = receiver.line_texts()
    assert phone not in text and mask(phone) in text


def test_one_message_urgent_first(tmp_path, mapping, receiver, env):
    outbox = [["通知ID", "作成日時", "宛先", "種別", "本文", "状態", "送信日時", "試行回数", "エラー"],
              ["n1", dt.datetime(2026, 11, 20, 9, 0), "運営", "入力エラー", "ふつう", "未送信", None, 0, None],
              ["n2", dt.datetime(2026, 11, 20, 9, 30), "運営", "ブラックリスト予約", "至急", "未送信", None, 0, None]]
    tabs = team_tabs([customer("C001")], []) | {"通知": outbox}
    path = write_book(tmp_path / "t.xlsx", tabs)
    go(path, mapping, sender(None, env))
    [slack] = receiver.at("/slack")
    text = json.dumps(json.loads(slack["body"]), ensure_ascii=False)
    assert text.index("至急") < text.index("ふつう")
    assert {k: v[0] for k, v in states(path).items()} == {"n1": "送信済", "n2": "送信済"}


def test_a_5xx_leaves_failed_and_the_next_run_delivers(tmp_path, mapping, receiver, env):
    path = workbook(tmp_path, [won("R001")])
    router = sender(None, env)
    receiver.fail("/v2/bot/message/push")
    summary = go(path, mapping, router)
    assert summary.failed >= 1
    state, attempts, error = states(path)["payment_link_requested:PL-R001"]
    assert (state, attempts) == ("失敗", 1) and "500" in error and LINE_TOKEN not in error
    go(path, mapping, router)
    assert states(path)["payment_link_requested:PL-R001"][:2] == ("送信済", 2)
    assert len(receiver.line_texts()) == 1


def test_bounded_retries_then_ops_is_told_once(tmp_path, mapping, receiver, env):
    path = workbook(tmp_path, [won("R001")])
    router = sender(None, env)
    receiver.fail("/v2/bot/message/push", 99)
    for _ in range(mapping.max_send_attempts + 2):
        go(path, mapping, router)
    rows = states(path)
    assert rows["payment_link_requested:PL-R001"][:2] == ("失敗", mapping.max_send_attempts)
    assert len(receiver.at("/v2/bot/message/push", None)) == mapping.max_send_attempts  # bounded
    assert rows["send_failed:payment_link_requested:PL-R001"][0] == "送信済"
    told = [slack_text(r) for r in receiver.at("/slack")]
    assert sum("payment_link_requested:PL-R001" in t for t in told) == 1  # 運営, once


class CrashAfter:
    """The process dies right after `last` was sent, before any mark is written."""

    def __init__(self, router, last):
        self.router, self.last = router, last

    def bind(self, frames):
        self.bound = self.router.bind(frames)
        return self

    def __call__(self, recipient, title, body, key):
        self.bound(recipient, title, body, key)
        if recipient == self.last:
            raise KeyboardInterrupt


def test_crash_between_send_and_mark_line_drops_the_repeat_slack_at_most_once_more(tmp_path, mapping, receiver, env):
    path = workbook(tmp_path, [won("R001"), won("R002"), booking("R009", "C001", "11/25 14:00")])
    router = sender(None, env)
    with pytest.raises(KeyboardInterrupt):
        go(path, mapping, CrashAfter(router, "高橋"))  # 運営 (Slack) then 高橋 (LINE) sent, nothing marked
    assert len(receiver.line_texts()) == 1 and len(receiver.at("/slack")) == 1
    assert states(path)["payment_link_requested:PL-R001"][:2] == ("未送信", 1)  # attempted, outcome unknown
    from tests.test_payment_links import append_row

    append_row(path, "予約", won("R003"))  # something new for 高橋 before the rerun
    go(path, mapping, router, now=NOW + pd.Timedelta(minutes=10))
    pushes = receiver.at("/v2/bot/message/push", None)
    assert [p["status"] for p in pushes] == [200, 409, 200]  # the batch in doubt again, same key: dropped
    assert pushes[0]["headers"]["X-Line-Retry-Key"] == pushes[1]["headers"]["X-Line-Retry-Key"]
    assert "R003" in receiver.line_texts()[-1] and "R001" not in receiver.line_texts()[-1]
    slack = receiver.at("/slack")
    assert len(slack) == 2 and slack_text(slack[0]) == slack_text(slack[1])  # no key: once more, never more
    assert all(s == "送信済" for s, _, _ in states(path).values())
    go(path, mapping, router, now=NOW + pd.Timedelta(minutes=20))
    assert len(receiver.requests) == 5


def test_quiet_hours_hold_ordinary_notices(tmp_path, mapping, receiver, env):
    path = workbook(tmp_path, [won("R001")])
    night = pd.Timestamp("2026-11-20T22:00", tz="Asia/Tokyo")
    go(path, mapping, sender(None, env), now=night)
    assert receiver.line_texts() == [] and states(path)["payment_link_requested:PL-R001"][0] == "未送信"
    go(path, mapping, sender(None, env), now=night + pd.Timedelta(hours=11))
    assert len(receiver.line_texts()) == 1


def test_staff_without_a_route_fail_visibly(tmp_path, mapping, receiver, env):
    tabs = team_tabs([customer("C001")], [won("R001")])
    tabs["担当者"] = [STAFF_HEADERS, ["佐藤", "営業", "sato", "TRUE"], ["高橋", "決済リンク作成", "nowhere", "TRUE"]]
    path = write_book(tmp_path / "t.xlsx", tabs)
    go(path, mapping, sender(None, env))
    state, _, error = states(path)["payment_link_requested:PL-R001"]
    assert state == "失敗" and re.search("nowhere.*設定されていません", error)
