"""`salesops setup`: the Prefect objects the deployments rely on, created idempotently.

A process work pool, the global rate limit every Sheets request takes a slot of (shared by all
workers through the one server), and optionally a Secret block holding the service-account key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
)
from prefect.exceptions import ObjectNotFound

POOL = "salesops"
SHEETS_LIMIT = "sheets-api"
SECRET = "salesops-google-credentials"


@dataclass(frozen=True)
class SetupResult:
    pool: str
    limit: str
    per_minute: int
    secret: str | None


def rate_limit_shape(per_minute: int) -> tuple[int, float]:
    """(slots, decay per second) so that no 60-second window holds more than `per_minute` requests.

    One slot that refills every 60/per_minute seconds: a strict, smooth cap (a bucket of N slots
    would let a burst of N through at a minute's edge, then N more). Prefect frees whole slots only
    (floor of decay x seconds since the limit last changed, and a refused attempt is a change), so
    the pace under contention is a little slower than `per_minute`, never faster.
    """
    if per_minute < 1:
        raise ValueError("the Sheets rate limit needs at least 1 request a minute")
    return 1, per_minute / 60


def ensure_setup(per_minute: int = 50, pool: str = POOL, credentials: Path | None = None) -> SetupResult:
    """Create what is missing and bring the limit to `per_minute`; running it again changes nothing."""
    slots, decay = rate_limit_shape(per_minute)
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        try:
            client.read_global_concurrency_limit_by_name(SHEETS_LIMIT)
            client.update_global_concurrency_limit(
                SHEETS_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots, slot_decay_per_second=decay, active=True)
            )
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=SHEETS_LIMIT, limit=slots, slot_decay_per_second=decay)
            )
    secret = None
    if credentials is not None:
        from prefect.blocks.system import Secret

        Secret(value=json.loads(Path(credentials).read_text(encoding="utf-8"))).save(SECRET, overwrite=True)
        secret = SECRET
    return SetupResult(pool, SHEETS_LIMIT, per_minute, secret)
