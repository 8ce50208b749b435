"""Optional: apply the open tag operations through the L-Step REST API.

Only with a token (LSTEP_API_TOKEN); without one the L-Step操作 tab is the interface and a person
does the work. The API (research §1.2, `https://docs.lineml.jp/`): base URL a setting
(`tags.api.base_url`, or LSTEP_API_BASE_URL), `Authorization: Bearer <token>`;
`POST` / `DELETE /friends/{id}/tags` with `{"tag_ids": [...]}` where {id} may be the LINE user id;
`GET /tags` lists the tags (paged by `cursor` / `next_cursor`) when the mapping does not give
their ids (`tags.api.tag_ids`). Requests are spaced to `tags.api.requests_per_second` (the
documented limit is 10 per second); 429 and 5xx are retried after `Retry-After` (or a short
backoff), a few times.

Each result is recorded on its operation row, as a Plan the writer applies with compare-and-set:
success → 対応済 ticked, 対応日時 = now, 理由 + `（API適用）`; failure → 理由 + `（API失敗: …）`
and the row stays open for a person (or the next apply). A missing or refused token (401/403)
stops the whole apply: it is a setting to fix, not a result per row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd

from tasks.frames import Frames
from tasks.lstep_export import line_user_id_of
from tasks.mapping import Mapping
from tasks.normalize import to_text
from tasks.plan import Edit, Plan
from tasks.rules.common import none_if_na
from tasks.rules.operations import open_rows
from tasks.rules.tags import ADD, REMOVE, tag_key

TOKEN_ENV = "LSTEP_API_TOKEN"
APPLIED = "（API適用）"
FAILED = "（API失敗: {why}）"
_NOTE = re.compile(r"[（(]API(?:適用|失敗: .*)[）)]$", re.DOTALL)  # read as typed or after NFKC
RETRY_STATUSES = (429, 500, 502, 503, 504)


class LStepError(Exception):
    """A request the API refused or that could not be made."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def fatal(self) -> bool:
        """The token is missing or refused: nothing will work until the setting is fixed."""
        return self.status in (401, 403)


class LStepClient:
    """A small client over httpx: Bearer auth, spaced requests, retries on 429 / 5xx."""

    def __init__(
        self,
        token: str,
        base_url: str,
        *,
        requests_per_second: float = 10,
        retries: int = 3,
        timeout: float = 10,
        max_wait: float = 30,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not token:
            raise ValueError(f"no L-Step API token (set {TOKEN_ENV})")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        self._interval = 1 / requests_per_second
        self._retries = retries
        self._max_wait = max_wait
        self._clock, self._sleep = clock, sleep
        self._last: float | None = None
        self.requests = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LStepClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ endpoints

    def tag_ids(self) -> dict[str, str]:
        """Every tag of the account: name (as compared, NFKC) -> id."""
        found: dict[str, str] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            body = self._request("GET", "/tags", params=params)
            items = body.get("data", []) if isinstance(body, dict) else body
            for item in items or []:
                if isinstance(item, dict) and "id" in item and "name" in item:
                    found.setdefault(tag_key(str(item["name"])), str(item["id"]))
            cursor = body.get("next_cursor") if isinstance(body, dict) else None
            if not cursor:
                return found

    def add_tags(self, friend: str, tag_ids: list[str]) -> None:
        self._request("POST", f"/friends/{quote(friend, safe='')}/tags", json={"tag_ids": _ids(tag_ids)})

    def remove_tags(self, friend: str, tag_ids: list[str]) -> None:
        self._request("DELETE", f"/friends/{quote(friend, safe='')}/tags", json={"tag_ids": _ids(tag_ids)})

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            self._pace()
            attempt += 1
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                if attempt > self._retries:
                    raise LStepError(f"接続できません: {type(exc).__name__}") from None
                self._sleep(min(self._max_wait, 0.5 * 2 ** (attempt - 1)))
                continue
            if response.status_code in RETRY_STATUSES and attempt <= self._retries:
                self._sleep(self._retry_after(response, attempt))
                continue
            if response.is_error:
                raise LStepError(f"{response.status_code} {_message(response)}", response.status_code)
            return response.json() if response.content else None

    def _pace(self) -> None:
        """At most `requests_per_second`: wait out the rest of the interval since the last one."""
        if self._last is not None:
            wait = self._last + self._interval - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last = self._clock()
        self.requests += 1

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        try:
            seconds = float(response.headers.get("Retry-After", ""))
        except ValueError:
            seconds = 0.5 * 2 ** (attempt - 1)
        return max(0.0, min(self._max_wait, seconds))


@dataclass(frozen=True)
class Outcome:
    operation_id: str
    ok: bool
    detail: str = ""


def apply_operations(
    frames: Frames, mapping: Mapping, client: LStepClient, now: pd.Timestamp
) -> tuple[Plan, list[Outcome]]:
    """Apply every open タグ追加 / タグ削除; the Plan records each result on its row."""
    table = frames["operations"]
    data = table.data
    ops = data[open_rows(table) & data["action"].isin((ADD, REMOVE))]
    ops = ops[ops["content"].notna()]
    if ops.empty:
        return Plan(), []
    ids = {tag_key(k): str(v) for k, v in mapping.tags.api.tag_ids.items()}
    looked_up = False
    customers = frames["customers"].data
    outcomes: list[Outcome] = []
    for op_id in sorted(ops.index, key=lambda i: (str(ops.at[i, "created_at"]), i)):
        row = ops.loc[op_id]
        key = tag_key(str(row["content"]))
        if key not in ids and not looked_up:
            ids = client.tag_ids() | ids
            looked_up = True
        friend = line_user_id_of(customers, row)
        if friend is None:
            outcomes.append(Outcome(op_id, False, "LINEユーザーIDがありません"))
            continue
        if key not in ids:
            outcomes.append(Outcome(op_id, False, "Lステップにこのタグがありません"))
            continue
        try:
            (client.add_tags if row["action"] == ADD else client.remove_tags)(friend, [ids[key]])
        except LStepError as exc:
            if exc.fatal:
                raise
            outcomes.append(Outcome(op_id, False, str(exc)))
            continue
        outcomes.append(Outcome(op_id, True))
    return _record(table.raw, outcomes, now), outcomes


def _record(raw: pd.DataFrame, outcomes: list[Outcome], now: pd.Timestamp) -> Plan:
    """The result on each row; a failure already noted with the same words is not written again."""
    edits: list[Edit] = []
    for out in outcomes:
        op_id = out.operation_id
        current = to_text(raw.at[op_id, "reason"])  # as written: check's NFKC would turn （ into (
        reason = _NOTE.sub("", current) + (APPLIED if out.ok else FAILED.format(why=out.detail))
        changes: list[tuple[str, object]] = [("done", True), ("done_at", now)] if out.ok else []
        if reason != current:
            changes.append(("reason", reason))
        edits += [Edit("operations", op_id, field, none_if_na(raw.at[op_id, field]), new, "L-Step API",
                       f"lstep-op:{op_id}") for field, new in changes]
    return Plan(edits=tuple(edits))


def _ids(tag_ids: list[str]) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in tag_ids]


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:200]
    return response.text[:200]
