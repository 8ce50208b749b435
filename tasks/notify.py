"""Where a notice goes: 宛先 (a staff name, a role, a channel) → Apprise URLs → sent.

Configuration (never the workbook: it holds no secret and no URL):
- a YAML or TOML file (`--routes FILE`, or `SALESOPS_ROUTES=FILE`):

      sender: 営業通知                  # optional: the name LINE shows for the bot
      default: console://              # optional: for a 宛先 with no route (else: a failure, retried, then 運営 told)
      routes:                          # a channel name (担当者.通知先), a staff name or a role → URL(s)
        ops: "line://${LINE_TOKEN}/${LINE_OPS_GROUP}"
        links: "forms://api.chatwork.com/v2/rooms/123/messages?+X-ChatWorkToken=${CHATWORK_TOKEN}&:message=body&:title=&:type=&:version="
        sato: ["slack://${SLACK_A}/${SLACK_B}/${SLACK_C}", "mailtos://${SMTP_USER}:${SMTP_PASS}@smtp.example.com?to=sato@example.com"]

- environment variables, which win over the file for the same name:
  `SALESOPS_ROUTE_<NAME>=url[,url]` (NAME is matched case-insensitively: SALESOPS_ROUTE_OPS is
  the channel `ops`; SALESOPS_ROUTE_DEFAULT is `default`).
- secrets: `${VAR}` is the environment variable VAR, `${secret:NAME}` the Prefect Secret block NAME;
  the value is percent-encoded into the URL (Apprise decodes it), and never appears in an error
  message that reaches the sheet.

Resolution of a 宛先: a route with exactly that name; else a staff name (担当者, 有効) → its 通知先
channel's route; else a role → every active staff member who holds it → their channels (each URL
once); else `default`. With nothing configured at all, the console is the channel.

Once-only per transport: `line://` goes through `LinePush`, which sends LINE's X-Line-Retry-Key
(a UUID5 of the delivery's key and the target) and takes LINE's 409 for that key as "already
delivered"; json://, form://, xml:// carry the key as an `Idempotency-Key` header (a receiver
may honour it); every other transport (Slack, e-mail, Chatwork through forms:// …) has no key, so
a crash between sending and marking delivers that message at most once more.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from json import dumps
from pathlib import Path
from urllib.parse import quote

import apprise
import pandas as pd
import requests
import yaml
from apprise.plugins.line import NotifyLine

from tasks.mapping import yaml_problem
from tasks.tell import Send, console

ENV_FILE = "SALESOPS_ROUTES"
ENV_PREFIX = "SALESOPS_ROUTE_"
DEFAULT = "default"
CONSOLE = "console://"
KEY_NAMESPACE = uuid.UUID("5b0c2f9e-4a0e-4f7e-9a53-1f6a8f1e7c42")  # salesops delivery keys → LINE retry keys
LINE_TEXT_MAX = 4500  # LINE: ≤ 5000 characters a text object (emoji count double): keep a margin
LINE_MESSAGES_MAX = 5  # LINE: ≤ 5 message objects per push, one request, one quota count per member
HEADER_SCHEMAS = {"json", "jsons", "form", "forms", "xml", "xmls"}

_VAR = re.compile(r"\$\{([^}]+)\}")
_URL_START = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")

log = logging.getLogger(__name__)

Transport = Callable[[str, str, str, str], None]  # url, title, body, key; raises on failure


class RouteConfigError(ValueError):
    """The routing configuration cannot be used (names the file, route or variable, never a secret)."""


class Unroutable(RuntimeError):
    """A 宛先 that resolves to no URL."""


class DeliveryError(RuntimeError):
    """One or more of a 宛先's URLs failed."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Routes:
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # normalized name -> URLs
    default: tuple[str, ...] = ()
    sender: str | None = None
    secrets: frozenset[str] = frozenset()  # resolved secret values, scrubbed from error messages

    def __bool__(self) -> bool:
        return bool(self.routes or self.default)

    def get(self, name: str) -> tuple[str, ...]:
        return self.routes.get(route_name(name), ())


def route_name(name: str) -> str:
    return unicodedata.normalize("NFKC", str(name)).strip().casefold()


def load_routes(
    path: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    secret: Callable[[str], str] | None = None,
) -> Routes:
    """The file (if any) and the environment's SALESOPS_ROUTE_* variables, secrets substituted."""
    env = os.environ if environ is None else environ
    path = path or env.get(ENV_FILE) or None
    raw: dict[str, list[str]] = {}
    sender = None
    if path:
        data = _read_file(Path(path))
        sender = data.get("sender")
        for name, urls in (data.get("routes") or {}).items():
            raw[route_name(name)] = _urls(urls, f"routes.{name}")
        if data.get(DEFAULT) is not None:
            raw[DEFAULT] = _urls(data[DEFAULT], DEFAULT)
    for var, value in env.items():
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            raw[route_name(var[len(ENV_PREFIX):])] = [u for u in _URL_START.split(value.strip()) if u]
    secrets: set[str] = set()
    resolved = {name: tuple(_substitute(u, env, secret, secrets, name) for u in urls) for name, urls in raw.items()}
    with _Scrubbed(secrets):
        for name, urls in resolved.items():
            for url in urls:
                _check_url(url, name, secrets)
    default = resolved.pop(DEFAULT, ())
    return Routes(resolved, default, str(sender) if sender else None, frozenset(secrets))


def _read_file(path: Path) -> dict:
    if not path.exists():
        raise RouteConfigError(f"routes file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:  # its message says where, never what the line holds
        raise RouteConfigError(f"{path.name}: cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise RouteConfigError(f"{path.name}: cannot be read: {yaml_problem(exc)}") from None
    data = data or {}
    if not isinstance(data, dict) or not isinstance(data.get("routes", {}) or {}, dict):
        raise RouteConfigError(f"{path.name}: expected keys routes (a mapping of name: URL or [URL, …]), default, sender")
    unknown = set(data) - {"routes", DEFAULT, "sender"}
    if unknown:
        raise RouteConfigError(f"{path.name}: unknown keys {sorted(unknown)} (expected routes, default, sender)")
    return data


def _urls(value, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise RouteConfigError(f"{where}: give a URL or a list of URLs")
    return [v.strip() for v in values]


def _substitute(url: str, env, secret, found: set[str], name: str) -> str:
    def value(match: re.Match) -> str:
        ref = match.group(1).strip()
        if ref.startswith("secret:"):
            block = ref.removeprefix("secret:").strip()
            try:
                text = (secret or _prefect_secret)(block)
            except Exception as exc:  # noqa: BLE001 - any failure to load names the block, not the value
                why = type(exc).__name__
                raise RouteConfigError(f"route {name}: Prefect Secret block {block!r} cannot be loaded ({why})") from None
        elif ref in env:
            text = env[ref]
        else:
            raise RouteConfigError(f"route {name}: environment variable {ref} is not set")
        text = str(text)
        found.update({text, quote(text, safe="")})
        return quote(text, safe="")

    return _VAR.sub(value, url)


def _prefect_secret(name: str) -> str:
    from prefect.blocks.system import Secret

    return str(Secret.load(name).get())


def _check_url(url: str, name: str, secrets: set[str]) -> None:
    if url.startswith(CONSOLE):
        return
    if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
        raise RouteConfigError(f"route {name}: not a URL Apprise can send to: {scrub(url.split('://')[0] + '://…', secrets)}")


def scrub(text: str, secrets: Iterable[str]) -> str:
    for s in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


class _Scrubbed(logging.Filter):
    """Apprise and urllib3 log each URL they send to at DEBUG, a route's token included: cut it out."""

    LOGGERS = ("apprise", "urllib3.connectionpool")

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage(), self.secrets), ()
        return True

    def __enter__(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


# --------------------------------------------------------------------------- the router


class Router:
    """A `tasks.tell.Send`: resolves a 宛先 to URLs and sends through Apprise."""

    def __init__(self, routes: Routes, staff: pd.DataFrame | None = None, transport: Transport | None = None):
        self.routes = routes
        self.staff = staff if staff is not None else pd.DataFrame(columns=["role", "channel", "active"])
        self.transport = transport or ApprisePush(routes.sender)

    def bind(self, frames) -> Router:
        """The run's 担当者: names (index), 役割, 通知先, 有効."""
        return Router(self.routes, frames["staff"].data[["role", "channel", "active"]], self.transport)

    def __call__(self, recipient: str, title: str, body: str, key: str) -> None:
        if not self.routes:
            console(recipient, title, body, key)
            return
        urls = self.resolve(recipient)
        failed = []
        with _Scrubbed(self.routes.secrets):
            for url in urls:
                try:
                    self.transport(url, title, body, key)
                except Exception as exc:  # noqa: BLE001 - every URL is tried; the failures are reported together
                    failed.append(f"{_service(url)}: {exc}")
        if failed:
            message = f"{len(failed)}/{len(urls)} の送信先に失敗: " + " / ".join(failed)
            raise DeliveryError(scrub(message, self.routes.secrets)[:280])

    def resolve(self, recipient: str) -> tuple[str, ...]:
        direct = self.routes.get(recipient)
        if direct:
            return direct
        staff = self.staff
        name = unicodedata.normalize("NFKC", str(recipient)).strip()
        if name in staff.index:
            if not bool(staff.at[name, "active"]):
                return self._default(recipient, f"担当者『{name}』は有効ではありません")
            return self._channel_urls(name) or self._default(recipient, self._why(name))
        holders = staff.index[staff["role"].eq(name) & staff["active"].astype(bool)]
        if len(holders):
            urls = _unique(u for h in sorted(holders) for u in self._channel_urls(h))
            return urls or self._default(recipient, f"役割『{name}』の担当者（{'、'.join(sorted(holders))}）の通知先が未設定です")
        return self._default(recipient, f"宛先『{name}』は通知先の設定にも担当者タブにもありません")

    def _channel_urls(self, name: str) -> tuple[str, ...]:
        channel = self.staff.at[name, "channel"]
        if not isinstance(channel, str) or not channel.strip() or "://" in channel:
            return ()
        return self.routes.get(channel)

    def _why(self, name: str) -> str:
        channel = self.staff.at[name, "channel"]
        if not isinstance(channel, str) or not channel.strip():
            return f"担当者『{name}』の通知先が空です"
        if "://" in channel:
            return f"担当者『{name}』の通知先にURLがあります。チャンネル名を書き、URLは設定ファイルへ"
        return f"通知先『{channel}』（{name}）の送信先が設定されていません（SALESOPS_ROUTE_{channel.upper()}）"

    def _default(self, recipient: str, why: str) -> tuple[str, ...]:
        if self.routes.default:
            return self.routes.default
        raise Unroutable(why)


def _unique(urls: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(urls))


def _service(url: str) -> str:
    return url.split("://", 1)[0] + "://"


def sender(routes_file: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Send:
    """The run's Send: a Router when anything is configured, else the console."""
    routes = load_routes(routes_file, environ)
    return Router(routes) if routes else console


# --------------------------------------------------------------------------- transports


class ApprisePush:
    """Send one message to one Apprise URL; raise with Apprise's own words on failure."""

    def __init__(self, sender_name: str | None = None):
        self.asset = apprise.AppriseAsset(app_id=sender_name or "salesops")
        self.sender_name = sender_name

    def __call__(self, url: str, title: str, body: str, key: str) -> None:
        if url.startswith(CONSOLE):
            console(url, title, body, key)
            return
        plugin = self.plugin(url, key)
        with apprise.LogCapture(level=logging.WARNING) as logs:
            ok = plugin.notify(body=body, title=title)
        if not ok:
            lines = [ln.split(" - ", 2)[-1] for ln in logs.getvalue().splitlines() if ln.strip()]
            raise DeliveryError(lines[-1] if lines else f"{plugin.service_name}: 送信に失敗しました")

    def plugin(self, url: str, key: str):
        if url.split("://", 1)[0].lower() == NotifyLine.secure_protocol:
            results = NotifyLine.parse_url(url)
            if not results:
                raise DeliveryError("line:// の URL を読めません")
            results["asset"] = self.asset
            return LinePush(retry_key=key, sender_name=self.sender_name, **results)
        plugin = apprise.Apprise.instantiate(url, asset=self.asset)
        if plugin is None:
            raise DeliveryError(f"{_service(url)} の URL を読めません")
        if url.split("://", 1)[0].lower() in HEADER_SCHEMAS:
            plugin.headers["Idempotency-Key"] = key
        return plugin


def retry_key(key: str, target: str) -> str:
    """LINE's X-Line-Retry-Key: a UUID, the same for the same delivery to the same target."""
    return str(uuid.uuid5(KEY_NAMESPACE, f"{key}|{target}"))


class LinePush(NotifyLine):
    """Apprise's line:// (Messaging API push), plus LINE's retry key and one push per target.

    - X-Line-Retry-Key = UUID5(delivery key, target): a resend of the same delivery is dropped by
      LINE (409 with X-Line-Accepted-Request-Id), which counts here as delivered.
    - A long message is split into up to 5 text objects of one push (one request, one quota count
      per group member), never into several pushes.
    - No icon, no rate wait between targets (LINE allows 2,000 pushes a second).
    """

    request_rate_per_sec = 0

    def __init__(self, token, targets=None, retry_key: str = "", sender_name: str | None = None, **kwargs):
        kwargs.pop("include_image", None)  # no icon: a staff channel needs none
        super().__init__(token, targets=targets, include_image=False, **kwargs)
        self.retry_key = retry_key
        self.sender_name = sender_name

    def send(self, body, title="", notify_type=None, **kwargs):
        if not self.targets:
            self.logger.warning("LINE: 送信先（グループID・ユーザーID）が URL にありません")  # becomes 通知.エラー
            return False
        messages = [{"type": "text", "text": t} for t in split_text(body, LINE_TEXT_MAX, LINE_MESSAGES_MAX)]
        if self.sender_name:
            for m in messages:
                m["sender"] = {"name": self.sender_name[:20]}
        ok = True
        for target in self.targets:
            headers = {
                "User-Agent": self.app_id,
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token}",
            }
            if self.retry_key:
                headers["X-Line-Retry-Key"] = retry_key(self.retry_key, target)
            self.throttle()
            try:
                r = requests.post(
                    self.notify_url, data=dumps({"to": target, "messages": messages}), headers=headers,
                    verify=self.verify_certificate, timeout=self.request_timeout, allow_redirects=self.redirects,
                )
            except requests.RequestException as exc:
                self.logger.warning(f"LINE: {target} に接続できません: {type(exc).__name__}")
                ok = False
                continue
            if r.status_code == 200:
                continue
            if r.status_code == 409 and self.retry_key and r.headers.get("X-Line-Accepted-Request-Id"):
                self.logger.info(f"LINE: {target} already delivered (retry key; accepted request "
                                 f"{r.headers['X-Line-Accepted-Request-Id']})")
                continue
            detail = (r.text or "")[:200].replace("\n", " ")
            self.logger.warning(f"LINE: {target} への送信に失敗 HTTP {r.status_code} {detail}")
            ok = False
        return ok


def split_text(text: str, size: int, parts: int) -> list[str]:
    """At most `parts` chunks of at most `size` characters, cut at line ends where possible."""
    chunks: list[str] = []
    rest = text
    while rest and len(chunks) < parts:
        if len(rest) <= size:
            chunks.append(rest)
            rest = ""
            break
        cut = rest.rfind("\n", 0, size)
        cut = cut if cut > size // 2 else size
        chunks.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest:
        more = "\n…（続きは『通知』タブ）"
        chunks[-1] = chunks[-1][: size - len(more)] + more
    return chunks or [""]
