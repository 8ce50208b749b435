"""Where a run reads and writes, and how it tells people: chosen in one place for every flow."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.mapping import Mapping
from tasks.notify import sender as routed_sender
from tasks.tell import Send
from tasks.workbooks.credentials import DEFAULT_ENV
from tasks.workbooks.local import LocalWorkbook
from tasks.workbooks.port import Workbook

SLOT_TIMEOUT_SECONDS = 600  # a run waiting this long for quota is stuck: fail it (運営 hears of it)


class SourceError(ValueError):
    """The run was not told where the sheets are, or told two places."""


def open_book(workbook: str | None, spreadsheet: str | None, *, credentials: str | None = None,
              endpoint: str | None = None, mapping: Mapping | None = None) -> tuple[Workbook, str]:
    """The workbook port for a local file or a Google spreadsheet, and a link for people.

    Inside a Prefect flow run every Sheets request first takes a slot of the server's strict rate
    limit, so all workers together stay under Google's per-minute quota, and the key comes from the
    Secret block `salesops setup` stored unless given (or in $SALESOPS_GOOGLE_CREDENTIALS); outside
    one (the command line with no server) nothing is asked of Prefect.
    """
    if bool(workbook) == bool(spreadsheet):
        raise SourceError("give exactly one of a workbook path or a spreadsheet id")
    if workbook:
        return LocalWorkbook(workbook), Path(workbook).resolve().as_uri()
    from prefect.context import FlowRunContext

    from tasks.workbooks.google import open_google

    endpoint = endpoint or os.environ.get("SALESOPS_SHEETS_ENDPOINT")
    quota = None
    if FlowRunContext.get() is not None:
        from flows.setup import SECRET

        quota = sheets_slot
        if credentials is None and not os.environ.get(DEFAULT_ENV):
            credentials = f"prefect-secret:{SECRET}"  # what `salesops setup --credentials` stored
    return open_google(spreadsheet, credentials=credentials, endpoint=endpoint, mapping=mapping, before_request=quota)


def sheets_slot() -> None:
    """Wait for a slot of the shared Sheets rate limit; a missing limit is an error, never "no limit"."""
    from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import rate_limit

    from flows.setup import SHEETS_LIMIT
    from tasks.workbooks.google import SheetsError

    try:
        rate_limit(SHEETS_LIMIT, strict=True, timeout_seconds=SLOT_TIMEOUT_SECONDS)
    except AcquireConcurrencySlotTimeoutError:
        raise SheetsError(f"no Sheets quota slot ({SHEETS_LIMIT}) in {SLOT_TIMEOUT_SECONDS} s: "
                          "too many runs at once, or the limit is inactive") from None
    except ConcurrencySlotAcquisitionError as exc:
        if "must be created" not in str(exc):  # the server did not answer well
            raise SheetsError(f"no Sheets quota slot from the Prefect server: {exc}") from None
        raise SheetsError(f"the Prefect server has no rate limit {SHEETS_LIMIT!r} for the Sheets quota: "
                          "run `salesops setup` against it") from None


def sender(routes: str | Path | None = None) -> Send:
    """The configured notification routing, or the console when none is configured.

    Configured: the routes file given (else `$SALESOPS_ROUTES`) and `SALESOPS_ROUTE_<NAME>` variables
    (tasks/notify.py). The flows' failure hooks pass the run's own routes parameter.
    """
    return routed_sender(routes)
