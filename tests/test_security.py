"""Security: credentials never appear in logs, errors, artifacts, messages or the workbook; phone
numbers and e-mails are masked in notifications and logs.

Whole command-line runs (`salesops reconcile --spreadsheet … --credentials KEY.json`) against the
Sheets stand-in, with a synthetic service-account key (a throwaway RSA key made per test process),
notification routes whose URLs hold a secret token (`${HOOK_TOKEN}`), and every logger recorded at
DEBUG. The secrets looked for: the private key (each line of its PEM body), its key id, the JWT
assertions the client signed, the access tokens the token endpoint issued, the route's token.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.workbooks.credentials import ServiceAccountKey
from tests.conftest import booking as booking_row
from tests.conftest import customer, team_tabs
from tests.sheets_standin import SheetsStandin, service_account_info, write_service_account_file
from tests.test_reliability import add_counts

NOW = "2026-11-20T10:00+09:00"
PHONES = ("090-1234-5678", "09012345678", "+819012345678", "080-2222-3333", "08022223333", "+818022223333")
EMAILS = ("taro.yamada@example.com", "hanako@example.co.jp")
HOOK_TOKEN = "hk-" + secrets.token_hex(12)
COUNTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    add_counts(COUNTS)
    COUNTS.clear()


class RecordingStandin(SheetsStandin):
    """The stand-in, keeping what the token endpoint saw and issued; `refuse` answers every token
    request 400 with an error that quotes the assertion, as a careless server would."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.assertions: list[str] = []
        self.issued: list[str] = []
        self.refuse = False

    def _answer(self, call, handler):
        if call.verb != "token":
            return super()._answer(call, handler)
        assertion = parse_qs(call.body.decode("utf-8", "replace")).get("assertion", [""])[0]
        self.assertions.append(assertion)
        if self.refuse:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT Signature: {assertion}"}
        status, body = super()._answer(call, handler)
        if status == 200:
            self.issued.append(body["access_token"])
        return status, body


class Receiver:
    """An HTTP endpoint for json:// notifications: records bodies; paths under /fail/ answer 500."""

    def __init__(self):
        self.bodies: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                receiver.bodies.append(body)
                self.send_response(500 if self.path.startswith("/fail/") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def standin() -> Iterator[RecordingStandin]:
    with RecordingStandin() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def team() -> dict[str, list[list]]:
    """Customers with phones and e-mails that reach messages: a won deal whose plan quotes them
    (→ the link maker), a blacklisted customer with a booking (→ 運営), a bad phone (→ 運営)."""
    start = dt.datetime(2026, 11, 25, 14, 0)
    return team_tabs(
        [customer("C001", "山田", "太郎", 電話番号=PHONES[0], メールアドレス=EMAILS[0]),
         customer("C002", "佐藤", "花子", 電話番号=PHONES[3], メールアドレス=EMAILS[1], ブラックリストメモ="未払い"),
         customer("C003", "鈴木", "一郎", 電話番号="03-1234")],
        [booking_row("R001", "C001", dt.datetime(2026, 11, 18, 10, 0), "来店済み", 結果="成約",
                     プラン=f"ライト（折返し {PHONES[0]} / {EMAILS[0]}、予備 {PHONES[5]}）"),
         booking_row("R002", "C002", start),
         booking_row("R003", "C003", start + dt.timedelta(days=1))],
    )


def secrets_of(standin: RecordingStandin, key: dict) -> dict[str, str]:
    """Every secret of the run, by a name to report (never the secret itself)."""
    body = [line for line in key["private_key"].splitlines() if "PRIVATE KEY" not in line and len(line) >= 40]
    found = {f"private key line {i}": line for i, line in enumerate(body)}
    found["private_key_id"] = key["private_key_id"]
    found |= {f"JWT assertion {i}": a for i, a in enumerate(standin.assertions) if a}
    found |= {f"JWT signature {i}": a.rsplit(".", 1)[-1] for i, a in enumerate(standin.assertions) if a.count(".") == 2}
    found |= {f"access token {i}": t for i, t in enumerate(standin.issued)}
    found["route token"] = HOOK_TOKEN
    return found


def leaked(where: dict[str, str], secret_values: dict[str, str]) -> list[str]:
    return [f"{name} in {place}" for place, text in where.items() for name, value in secret_values.items() if value in text]


def unmasked(where: dict[str, str]) -> list[str]:
    return [f"{value} in {place}" for place, text in where.items() for value in (*PHONES, *EMAILS) if value in text]


def workbook_text(standin: SheetsStandin, sid: str) -> str:
    with standin._lock:
        titles = [s.title for s in standin._book(sid).sheets]
    return json.dumps({t: standin.tab_values(sid, t) for t in titles}, ensure_ascii=False, default=str)


def column_text(standin: SheetsStandin, sid: str, title: str, headers: tuple[str, ...]) -> str:
    rows = standin.tab_values(sid, title)
    cols = [rows[0].index(h) for h in headers]
    return "\n".join(str(r[c]) for r in rows[1:] for c in cols if c < len(r))


def cli(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, args, env={"PREFECT_API_URL": "", "SALESOPS_ROUTES": "", **env}, catch_exceptions=False)


LOGGERS = ("urllib3", "requests", "google", "gspread", "apprise", "tasks", "flows")


class _Kept(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured(caplog) -> Iterator[Callable[[int], str]]:
    """Every log record as text, from `level` up: the libraries' (urllib3, google-auth, gspread,
    Apprise) and ours from DEBUG, kept here and not passed on (a Prefect console handler set up by
    an earlier command of this process writes to that command's closed output); every other
    logger's from WARNING (pytest's caplog)."""
    records: list[logging.LogRecord] = []
    handler = _Kept(records)
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(handler)

    def text(level: int = logging.DEBUG) -> str:
        shown = logging.Formatter()
        return "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {shown.formatException(r.exc_info) if r.exc_info else ''}"
                         for r in [*records, *caplog.records] if r.levelno >= level)

    try:
        yield text
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def test_a_run_keeps_credentials_and_contacts_out_of_everything(standin, receiver, tmp_path, captured):
    """A run that sends (one route failing, so an error is recorded in 通知) through routes holding a
    token: no secret anywhere; phones and e-mails masked in every message, the outbox and the logs."""
    key_file = write_service_account_file(tmp_path / "salesops-key.json", standin.url)
    key = json.loads(key_file.read_text(encoding="utf-8"))
    standin.add_spreadsheet("sec-routed", team())
    hook = f"json://{receiver.base}/hook/${{HOOK_TOKEN}}"
    env = {"HOOK_TOKEN": HOOK_TOKEN, "SALESOPS_ROUTE_LINKS": hook, "SALESOPS_ROUTE_SATO": hook,
           "SALESOPS_ROUTE_SUZUKI": hook, "SALESOPS_ROUTE_OPS": f"json://{receiver.base}/fail/${{HOOK_TOKEN}}"}
    result = cli(["reconcile", "--spreadsheet", "sec-routed", "--credentials", str(key_file),
                  "--sheets-endpoint", standin.url, "--now", NOW], env)
    assert result.exit_code == 0, result.output
    assert standin.issued and standin.assertions  # the key was really used
    assert len(receiver.bodies) >= 2  # the link maker's request went; 運営's failed (recorded in 通知)
    errors = column_text(standin, "sec-routed", "通知", ("エラー",))
    assert errors.strip(), "a failed delivery leaves its error in 通知"
    where = {"command output": result.output, "logs": captured(logging.INFO),
             "workbook": workbook_text(standin, "sec-routed"), "messages": "\n".join(receiver.bodies)}
    found = leaked(where, secrets_of(standin, key))
    google = {k: v for k, v in secrets_of(standin, key).items() if k != "route token"}
    found += leaked({"debug logs": captured()}, google)
    outbox = column_text(standin, "sec-routed", "通知", ("本文", "エラー"))
    found += unmasked({"messages": where["messages"], "通知": outbox, "logs": where["logs"],
                       "command output": result.output})
    assert "090-****-5678" in where["messages"] or "090-****-5678" in outbox  # masked, not dropped
    COUNTS["security_runs"] += 1
    COUNTS["losses_found"] += len(found)
    assert not found, found


def test_console_channel_masks_contacts(standin, tmp_path, captured):
    """With no route configured the run's own output is the channel: masked there too."""
    key_file = write_service_account_file(tmp_path / "key.json", standin.url)
    standin.add_spreadsheet("sec-console", team())
    result = cli(["reconcile", "--spreadsheet", "sec-console", "--credentials", str(key_file),
                  "--sheets-endpoint", standin.url, "--now", NOW], {})
    assert result.exit_code == 0, result.output
    assert "── 通知 →" in result.output  # the notices were printed
    key = json.loads(key_file.read_text(encoding="utf-8"))
    where = {"command output": result.output, "logs": captured()}
    found = leaked(where, secrets_of(standin, key)) + unmasked(where)
    COUNTS["security_runs"] += 1
    COUNTS["losses_found"] += len(found)
    assert not found, found


def _broken_private_key(info: dict) -> dict:
    lines = info["private_key"].splitlines()
    lines[5] = "A" * len(lines[5])  # still base64, no longer a key
    return {**info, "private_key": "\n".join(lines) + "\n"}


@pytest.mark.parametrize("case", ["unreadable private key", "truncated JSON in the environment",
                                  "token refused, error quoting the assertion", "spreadsheet not found"])
def test_credential_failures_name_the_source_never_the_key(case, standin, tmp_path, captured):
    """Every way the key can fail: one line naming where the key came from; nothing of the key."""
    info = service_account_info(standin.url)
    key_file = tmp_path / "salesops-key.json"
    args = ["reconcile", "--spreadsheet", "sec-fail", "--sheets-endpoint", standin.url, "--now", NOW]
    env: dict[str, str] = {}
    source = str(key_file)
    standin.add_spreadsheet("sec-fail", team())
    if case == "unreadable private key":
        key_file.write_text(json.dumps(_broken_private_key(info)), encoding="utf-8")
        args += ["--credentials", str(key_file)]
    elif case == "truncated JSON in the environment":
        text = json.dumps(info)
        env["SALESOPS_GOOGLE_CREDENTIALS"] = text[: text.index("PRIVATE KEY") + 200]
        source = "SALESOPS_GOOGLE_CREDENTIALS"
    else:
        key_file.write_text(json.dumps(info), encoding="utf-8")
        args += ["--credentials", str(key_file)]
        if case == "spreadsheet not found":
            args[2] = "sec-no-such-sheet"
            source = "sec-no-such-sheet"
    standin.refuse = case.startswith("token refused")
    try:
        result = cli(args, env)
    finally:
        standin.refuse = False
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and result.output.count("error:") == 1, result.output
    assert "Traceback" not in result.output
    assert source in " ".join(result.output.split()), result.output
    secret_values = secrets_of(standin, info) | {"whole key": info["private_key"][40:120]}
    found = leaked({"command output": result.output, "logs": captured()}, secret_values)
    COUNTS["security_runs"] += 1
    COUNTS["losses_found"] += len(found)
    assert not found, found


def test_the_key_object_does_not_print_or_pickle(standin):
    """What Prefect could log or persist (a parameter, a result) never carries the key itself."""
    import pickle

    info = service_account_info(standin.url)
    key = ServiceAccountKey(info, "file salesops-key.json")
    shown = f"{key!r} {key} {key.__slots__}"
    assert info["private_key"][40:80] not in shown and "salesops-key.json" in shown
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_secrets_of_finds_a_leak(standin, tmp_path):
    """The detector itself: a key line in a text is found, by name only."""
    info = json.loads(write_service_account_file(tmp_path / "k.json", standin.url).read_text(encoding="utf-8"))
    line = info["private_key"].splitlines()[3]
    found = leaked({"log": f"oops {line} oops"}, secrets_of(standin, info))
    assert found == ["private key line 2 in log"]
    assert unmasked({"log": "call 090-1234-5678"}) == ["090-1234-5678 in log"]
    assert not unmasked({"log": "call 090-****-5678"})


def test_route_tokens_stay_out_of_debug_logs(standin, receiver, tmp_path, captured):
    key_file = write_service_account_file(tmp_path / "key.json", standin.url)
    standin.add_spreadsheet("sec-debug", team())
    env = {"HOOK_TOKEN": HOOK_TOKEN, "SALESOPS_ROUTE_DEFAULT": f"json://{receiver.base}/hook/${{HOOK_TOKEN}}"}
    result = cli(["reconcile", "--spreadsheet", "sec-debug", "--credentials", str(key_file),
                  "--sheets-endpoint", standin.url, "--now", NOW], env)
    assert result.exit_code == 0 and receiver.bodies, result.output
    assert HOOK_TOKEN not in captured()
