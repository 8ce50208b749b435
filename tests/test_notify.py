"""Notifications through Apprise to a local HTTP receiver: routing, one message, once, retries.

The receiver is a real HTTP server on loopback started by the test. json:// and form:// point at
it directly. The LINE and Slack plugins have fixed https endpoints and Apprise 1.13 has no option
to change a plugin's host, so the receiver is also the HTTPS proxy the test's environment names
(`https_proxy`): it answers the CONNECT for api.line.me or hooks.slack.com itself, with a
certificate from a throwaway CA that `REQUESTS_CA_BUNDLE` makes trusted. Nothing in Apprise or in
our code is patched: the request that arrives is the one LINE or Slack would get, over TLS. The
receiver plays LINE's retry-key rule: a push whose X-Line-Retry-Key was already accepted gets 409
with X-Line-Accepted-Request-Id.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import ssl
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flows.pipeline import run
from flows.sources import sender as flow_sender
from tasks.notify import (
    DeliveryError,
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
from tests.test_payment_links import append_row, links_only

LINE_TOKEN = "AbC+dEf/GhI123=="  # channel tokens carry / + =
GROUP = "C0123456789abcdef0123456789abcdef"
HELD = dt.datetime(2026, 11, 19, 14, 0)
LINE_PUSH = "api.line.me/v2/bot/message/push"  # where Apprise's line:// posts
SLACK = "hooks.slack.com/services/"  # where Apprise's slack:// webhook mode posts
SERVICE_HOSTS = ("api.line.me", "hooks.slack.com")


def tls_for(hosts: tuple[str, ...], folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for `hosts`, signed by a throwaway CA; and the CA's file for REQUESTS_CA_BUNDLE."""
    now = dt.datetime.now(dt.UTC)

    def cert(subject, issuer, key, signer, ca: bool, extra=()):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        for ext in extra:
            b = b.add_extension(ext, critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "salesops test CA")])
    ca = cert(ca_name, ca_name, ca_key, ca_key, True)
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]), ca_name, leaf_key, ca_key, False, (
        x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
    ))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "leaf.key").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return context, folder / "ca.pem"


class Receiver:
    """What arrived (`host` + `path`); `fail(prefix, n)` answers the next n requests there with 500.

    Also an HTTPS proxy for SERVICE_HOSTS only (`proxy_env()`): a CONNECT is answered here, never
    forwarded, so nothing leaves the machine.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.failures: dict[str, int] = {}
        self.accepted_keys: set[str] = set()
        self.lock = threading.Lock()
        self.folder = tempfile.TemporaryDirectory()
        self.tls, self.ca_file = tls_for(SERVICE_HOSTS, Path(self.folder.name))
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                receiver.handle(self, body)

            def do_CONNECT(self):
                if self.path.rsplit(":", 1)[0] not in SERVICE_HOSTS:
                    self.send_error(403)
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                Handler(receiver.tls.wrap_socket(self.connection, server_side=True), self.client_address, self.server)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def proxy_env(self) -> dict[str, str]:
        return {"https_proxy": f"http://{self.base}", "REQUESTS_CA_BUNDLE": str(self.ca_file)}

    def fail(self, prefix: str, times: int = 1):
        self.failures[prefix] = times

    def handle(self, h: BaseHTTPRequestHandler, body: str):
        with self.lock:
            url = f"{h.headers.get('Host', '')}{h.path}"
            record = {"url": url, "path": h.path, "headers": dict(h.headers.items()), "body": body, "status": 200}
            self.requests.append(record)
            prefix = next((p for p in self.failures if self._match(record, p) and self.failures[p] > 0), None)
            if prefix is not None:
                self.failures[prefix] -= 1
                record["status"] = 500
                return self._answer(h, 500, b'{"message":"boom"}')
            if url.startswith(LINE_PUSH):
                key = h.headers.get("X-Line-Retry-Key")
                if key in self.accepted_keys:
                    record["status"] = 409
                    return self._answer(h, 409, b'{"message":"The retry key is already accepted"}',
                                        {"X-Line-Accepted-Request-Id": "req-1"})
                if key:
                    self.accepted_keys.add(key)
                return self._answer(h, 200, b"{}")
            if url.startswith(SLACK):
                return self._answer(h, 200, b"ok")  # Slack's webhook answers the literal text ok
            return self._answer(h, 200, b"{}")

    @staticmethod
    def _match(record: dict, prefix: str) -> bool:
        return record["path"].startswith(prefix) or record["url"].startswith(prefix)

    @staticmethod
    def _answer(h, status, payload, headers=None):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def at(self, prefix: str, status: int | None = 200) -> list[dict]:
        return [r for r in self.requests if self._match(r, prefix) and (status is None or r["status"] == status)]

    def line_texts(self, status: int | None = 200) -> list[str]:
        return ["\n".join(m["text"] for m in json.loads(r["body"])["messages"]) for r in self.at(LINE_PUSH, status)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.folder.cleanup()


@pytest.fixture
def receiver(monkeypatch):
    """The receiver, and this test's environment sending LINE's and Slack's https traffic to it."""
    r = Receiver()
    for var in ("HTTPS_PROXY", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var, value in r.proxy_env().items():
        monkeypatch.setenv(var, value)
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
    # pyyaml's own message quotes the lines around the error, and a route's line holds its token
    ('routes:\n  ops: "slack://T0K3N-SECRET/B1/x\n  links: [1, 2\n', {}, r"line 4, column 1: found unexpected end of stream"),
])
def test_bad_routes_name_the_problem_never_the_secret(tmp_path, text, env, match):
    (tmp_path / "r.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RouteConfigError, match=match) as refused:
        load_routes(tmp_path / "r.yaml", env)
    assert "T0K3N" not in str(refused.value) and "\n" not in str(refused.value)


def test_nothing_configured_is_the_console(capsys):
    assert sender(None, {}) is console
    Router(Routes())("佐藤", "t", "本文", "k")
    assert "本文" in capsys.readouterr().out


def test_the_flows_sender_is_the_configured_routing(tmp_path, monkeypatch, receiver):
    """flows.sources.sender(): what every flow and the failure hook use; no argument needed."""
    for var in [v for v in os.environ if v.startswith("SALESOPS_ROUTE")]:
        monkeypatch.delenv(var)
    assert flow_sender() is console
    (tmp_path / "routes.yaml").write_text(f"routes:\n  運営: json://{receiver.base}/hook/ops\n", encoding="utf-8")
    monkeypatch.setenv("SALESOPS_ROUTES", str(tmp_path / "routes.yaml"))
    flow_sender()("運営", "実行エラー", "from the file", "k1")
    assert flow_sender(tmp_path / "routes.yaml") is not console
    monkeypatch.delenv("SALESOPS_ROUTES")
    monkeypatch.setenv("SALESOPS_ROUTE_OPS", f"json://{receiver.base}/hook/env")
    flow_sender()("ops", "実行エラー", "from the environment", "k2")
    assert [json.loads(r["body"])["message"] for r in receiver.at("/hook/")] == ["from the file", "from the environment"]


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
    [req] = receiver.at(LINE_PUSH)
    assert req["headers"]["Authorization"] == f"Bearer {LINE_TOKEN}"
    assert req["headers"]["X-Line-Retry-Key"] == retry_key("k1", GROUP) == str(uuid.UUID(retry_key("k1", GROUP)))
    payload = json.loads(req["body"])
    assert payload["to"] == GROUP and 2 <= len(payload["messages"]) <= 5  # one push, split into text objects
    assert all(m["type"] == "text" and len(m["text"]) <= 5000 for m in payload["messages"])
    assert payload["messages"][0]["text"].startswith("決済リンク作成依頼")
    Router(routes)("g", "t", "same delivery again", "k1")  # LINE answers 409: already delivered, not a failure
    assert [r["status"] for r in receiver.at(LINE_PUSH, None)] == [200, 409]


def test_slack_json_and_chatwork_form_requests(receiver):
    env = {"CW": "cw-token", "SALESOPS_ROUTE_S": "slack://T000/B000/XXXXXXXX",
           "SALESOPS_ROUTE_J": f"json://{receiver.base}/hook/j",
           "SALESOPS_ROUTE_C": f"form://{receiver.base}/v2/rooms/123/messages?+X-ChatWorkToken=${{CW}}"
                               "&:message=body&:title=&:type=&:version="}
    r = Router(load_routes(None, env))
    for name in ("s", "j", "c"):
        r(name, "件名", "本文です", "key-1")
    [slack] = receiver.at(SLACK + "T000/B000/XXXXXXXX")
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
    assert len(receiver.at(SLACK)) == 1  # 運営: one message
    first = len(receiver.requests)
    go(path, mapping, router, full=True)
    go(path, mapping, router)
    assert len(receiver.requests) == first  # nothing twice
    assert all(s == "送信済" for s, _, _ in states(path).values())


def test_masked_in_what_arrives(tmp_path, mapping, receiver, env):
    phone, email = "090-1234-5678", "taro.yamada@example.com"
    path = workbook(tmp_path, [won("R001", プラン=f"電話 {phone} / {email} の方")])
    go(path, mapping, sender(None, env))
    [text] = receiver.line_texts()
    assert phone not in text and mask(phone) == "090-****-5678" and mask(phone) in text
    assert email not in text and "t***@example.com" in text


@pytest.mark.parametrize(("text", "masked"), [
    ("電話 090-1234-5678", "電話 090-****-5678"),
    ("０９０－１２３４－５６７８", "０９０－****－５６７８"),
    ("+81 90-1234-5678", "+81 9*-****-5678"),
    ("+819012345678", "+819*****5678"),
    ("taro.yamada+x@example.co.jp に連絡", "t***@example.co.jp に連絡"),
    ("taro＠example．jp", "t***@example．jp"),
    ("090.1234.5678", "090.****.5678"),
    ("折返し090\u22121234\u22125678", "折返し090\u2212****\u22125678"),  # the minus sign, the en and em dashes
    ("090\u20131234\u20135678 / 090\u20141234\u20145678", "090\u2013****\u20135678 / 090\u2014****\u20145678"),
    ("tel09012345678, TEL:03-1234-5678", "tel090****5678, TEL:03-1***-5678"),
    ("SMS 090/1234/5678", "SMS 090/****/5678"),  # check reads these as phones: so must the mask
    ("090・1234・5678, ０９０　１２３４　５６７８", "090・****・5678, ０９０　****　５６７８"),
    ("mobile09012345678 phone:03-1234-5678", "mobile090****5678 phone:03-1***-5678"),
    ("SMS 090 / 1234 / 5678, fax03-1234-5678", "SMS 090 / **** / 5678, fax03-1***-5678"),
    ("連絡先 090-1234-5678/2026/11/20", "連絡先 090-****-5678/2026/11/20"),  # a number ends at its last digit
    ("（090-1234-56789）, 0312345678901", "（090-****-*6789）, 031******8901"),  # a digit too many: masked still
    ("期限 2026/11/20 09:00 / 2026/11/21 09:00, 件数 0・1・2・3・4・5・6・7・8・9",
     "期限 2026/11/20 09:00 / 2026/11/21 09:00, 件数 0・1・2・3・4・5・6・7・8・9"),
    ("開始 2026-11-20 10:00（予約 R20261120001, ID 1234567890）", "開始 2026-11-20 10:00（予約 R20261120001, ID 1234567890）"),
])
def test_masking_hides_phones_and_emails_not_dates_or_ids(text, masked):
    assert mask(text) == masked


def test_one_message_urgent_first(tmp_path, mapping, receiver, env):
    outbox = [["通知ID", "作成日時", "宛先", "種別", "本文", "状態", "送信日時", "試行回数", "エラー"],
              ["n1", dt.datetime(2026, 11, 20, 9, 0), "運営", "入力エラー", "ふつう", "未送信", None, 0, None],
              ["n2", dt.datetime(2026, 11, 20, 9, 30), "運営", "ブラックリスト予約", "至急", "未送信", None, 0, None]]
    tabs = team_tabs([customer("C001")], []) | {"通知": outbox}
    path = write_book(tmp_path / "t.xlsx", tabs)
    go(path, mapping, sender(None, env))
    [slack] = receiver.at(SLACK)
    text = json.dumps(json.loads(slack["body"]), ensure_ascii=False)
    assert text.index("至急") < text.index("ふつう")
    assert {k: v[0] for k, v in states(path).items()} == {"n1": "送信済", "n2": "送信済"}


def test_a_5xx_leaves_failed_and_the_next_run_delivers(tmp_path, mapping, receiver, env):
    path = workbook(tmp_path, [won("R001")])
    router = sender(None, env)
    receiver.fail(LINE_PUSH)
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
    receiver.fail(LINE_PUSH, 99)
    for _ in range(mapping.max_send_attempts + 2):
        go(path, mapping, router)
    rows = states(path)
    assert rows["payment_link_requested:PL-R001"][:2] == ("失敗", mapping.max_send_attempts)
    assert len(receiver.at(LINE_PUSH, None)) == mapping.max_send_attempts  # bounded
    assert rows["send_failed:payment_link_requested:PL-R001"][0] == "送信済"
    told = [slack_text(r) for r in receiver.at(SLACK)]
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
    assert len(receiver.line_texts()) == 1 and len(receiver.at(SLACK)) == 1
    assert states(path)["payment_link_requested:PL-R001"][:2] == ("未送信", 1)  # attempted, outcome unknown
    append_row(path, "予約", won("R003"))  # something new for 高橋 before the rerun
    go(path, mapping, router, now=NOW + pd.Timedelta(minutes=10))
    pushes = receiver.at(LINE_PUSH, None)
    assert [p["status"] for p in pushes] == [200, 409, 200]  # the batch in doubt again, same key: dropped
    assert pushes[0]["headers"]["X-Line-Retry-Key"] == pushes[1]["headers"]["X-Line-Retry-Key"]
    assert "R003" in receiver.line_texts()[-1] and "R001" not in receiver.line_texts()[-1]
    slack = receiver.at(SLACK)
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


# --------------------------------------------------------------------------- on a real Prefect server


@pytest.mark.e2e
def test_digest_flow_on_prefect_reads_the_route_secret_from_a_secret_block(tmp_path, receiver, monkeypatch):
    """The daily-digest deployment's flow, run by Prefect; the LINE token only in a Secret block."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from flows.digest import digest_flow
    from tests.test_digest import op
    from tests.test_digest import workbook as digest_workbook

    path = digest_workbook(tmp_path, operations=[op("OP1", "佐藤")])
    for var in [v for v in os.environ if v.startswith("SALESOPS_ROUTE")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("SALESOPS_ROUTE_SATO", f"line://${{secret:salesops-line-token}}/{GROUP}")
    with prefect_test_harness(server_startup_timeout=120):
        Secret(value=LINE_TOKEN).save("salesops-line-token")
        summary = digest_flow(workbook=str(path), now="2026-11-20T18:00+09:00")
        again = digest_flow(workbook=str(path), now="2026-11-20T18:30+09:00")
        with get_client(sync_client=True) as client:
            published = {a.key for a in client.read_artifacts()}
        # a run that fails tells 運営 through the run's routing (the on_failure hook)
        monkeypatch.setenv("SALESOPS_ROUTE_運営", f"json://{receiver.base}/hook/ops")
        with pytest.raises(FileNotFoundError):
            digest_flow(workbook=str(tmp_path / "missing.xlsx"), now="2026-11-20T18:00+09:00")
    assert {"digest-summary", "digest-changes"} <= published
    [failed] = receiver.at("/hook/ops")
    assert json.loads(failed["body"])["title"] == "実行エラー" and "missing.xlsx" in json.loads(failed["body"])["message"]
    [push] = receiver.at(LINE_PUSH)
    assert push["headers"]["Authorization"] == f"Bearer {LINE_TOKEN}"
    assert "L-Step操作" in receiver.line_texts()[0] and json.loads(push["body"])["to"] == GROUP
    assert (summary.sent, again.sent) == (1, 0)
    assert {r["通知ID"]: r["状態"] for r in tab_records(path, "通知")} == {"digest:佐藤:2026-11-20": "送信済"}


def test_a_line_url_without_a_target_fails_in_japanese(receiver):
    routes = load_routes(None, {"LINE_TOKEN": LINE_TOKEN, "SALESOPS_ROUTE_G": "line://${LINE_TOKEN}/"})
    with pytest.raises(DeliveryError, match="送信先（グループID・ユーザーID）が URL にありません") as exc:
        Router(routes)("g", "t", "b", "k")
    assert LINE_TOKEN not in str(exc.value) and not receiver.at(LINE_PUSH, None)
