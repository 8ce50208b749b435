"""The Google service-account key: where it comes from, and never where it goes.

Three sources, named by one string (the `--credentials` option):
- a path to the JSON key file Google gives you (`key.json`);
- `env:NAME`: an environment variable holding the JSON itself (the default, with no option, is
  `SALESOPS_GOOGLE_CREDENTIALS`);
- `prefect-secret:BLOCK`: a Prefect Secret block holding the JSON (for deployments).

The key is never printed, logged or put in an error message: errors name the source (the file's
path, the variable's name, the block's name) and what is wrong, never the content. The only
scope asked for is `spreadsheets`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
DEFAULT_ENV = "SALESOPS_GOOGLE_CREDENTIALS"
REQUIRED = ("type", "client_email", "private_key", "token_uri")


class CredentialsError(ValueError):
    """The service-account key cannot be found or used. The message never holds the key."""


class ServiceAccountKey:
    """A loaded key: `source` and `email` may be shown; `info` never is (not in repr, not in str)."""

    __slots__ = ("_info", "email", "source")

    def __init__(self, info: Mapping[str, Any], source: str):
        self._info = dict(info)
        self.source = source
        self.email = str(info.get("client_email", ""))

    def __repr__(self) -> str:
        return f"ServiceAccountKey(source={self.source!r}, email={self.email!r})"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a Prefect result or a log
        raise TypeError("a service-account key is not serializable")

    def credentials(self, endpoint: str | None = None):
        """google-auth credentials, scope `spreadsheets` only.

        With an endpoint (a Sheets API stand-in), the token is fetched from `<endpoint>/token`
        and google-auth's background lookup of a 'regional access boundary' (a call to
        iamcredentials.googleapis.com) is pinned to a no-op, so nothing leaves for Google.
        """
        from google.oauth2.service_account import Credentials

        info = dict(self._info)
        if endpoint:
            info["token_uri"] = endpoint.rstrip("/") + "/token"
        try:
            creds = Credentials.from_service_account_info(info, scopes=list(SCOPES))
        except Exception:  # noqa: BLE001 - the library's message may quote the key: never shown
            raise CredentialsError(
                f"service-account key from {self.source}: the private key cannot be read "
                "(download a new JSON key for the service account)"
            ) from None
        if endpoint and hasattr(creds, "_set_regional_access_boundary"):
            far = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=3650)
            creds._set_regional_access_boundary({"encodedLocations": "0x0", "expiry": far})
        return creds


def load_key(source: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None) -> ServiceAccountKey:
    """Load the key named by `source` (see the module docstring); None: the default variable."""
    environ = os.environ if environ is None else environ
    if source is None:
        if not environ.get(DEFAULT_ENV):
            raise CredentialsError(
                f"no Google credentials: give --credentials KEY.json, or put the key's JSON in ${DEFAULT_ENV}"
            )
        source = f"env:{DEFAULT_ENV}"
    text = str(source)
    if text.startswith("env:"):
        name = text[4:]
        where = f"environment variable ${name}"
        if not environ.get(name):
            raise CredentialsError(f"service-account key from {where}: the variable is not set or empty")
        return _parse(environ[name], where)
    if text.startswith("prefect-secret:"):
        return _from_prefect(text.split(":", 1)[1])
    return _from_file(Path(text).expanduser())


def _from_file(path: Path) -> ServiceAccountKey:
    where = f"file {path}"
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialsError(f"service-account key from {where}: no such file") from None
    except OSError as exc:
        raise CredentialsError(f"service-account key from {where}: cannot be read ({type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"service-account key from {where}: not a JSON key file") from None
    return _parse(content, where)


def prefect_secret(block: str) -> Any:
    """The value of a Prefect Secret block (needs the Prefect API the deployment runs with)."""
    from prefect.blocks.system import Secret

    return Secret.load(block).get()


def _from_prefect(block: str) -> ServiceAccountKey:
    where = f"Prefect Secret block {block!r}"
    try:
        value = prefect_secret(block)
    except Exception as exc:  # noqa: BLE001 - the block's value must not reach the message
        raise CredentialsError(f"service-account key from {where}: cannot be loaded ({type(exc).__name__})") from None
    if isinstance(value, Mapping):
        return _checked(value, where)
    return _parse(str(value), where)


def _parse(content: str, where: str) -> ServiceAccountKey:
    try:
        info = json.loads(content)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the text itself is never echoed
        raise CredentialsError(
            f"service-account key from {where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(info, Mapping):
        raise CredentialsError(f"service-account key from {where}: expected a JSON object")
    return _checked(info, where)


def _checked(info: Mapping[str, Any], where: str) -> ServiceAccountKey:
    missing = [k for k in REQUIRED if not info.get(k)]
    if missing:
        raise CredentialsError(
            f"service-account key from {where}: missing {', '.join(missing)} "
            "(use the JSON key of a service account, not an OAuth client file)"
        )
    if info.get("type") != "service_account":
        raise CredentialsError(f"service-account key from {where}: type is not 'service_account'")
    return ServiceAccountKey(info, where)
