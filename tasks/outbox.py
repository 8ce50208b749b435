"""The 通知 outbox: every message is a row first, sent second, marked third.

A notice's id is deterministic per event, so the same event seen by a rerun is the same row and
is never told twice. Phone numbers and e-mails are masked before they reach a row.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.normalize import HYPHENS
from tasks.plan import Append
from tasks.rules.common import new_row

PENDING, SENT, FAILED = "未送信", "送信済", "失敗"

_EMAIL = re.compile(r"([^\s@＠、。,;:()（）<>]{1,64})[@＠]([^\s@＠、。,;:()（）<>]+[.．][A-Za-zＡ-Ｚａ-ｚ]{2,})")
# A phone number starts with 0 and a digit 1-9 (domestic: ten or eleven digits) or + (international:
# up to fifteen), so a date (2026-11-20 10:00), a time (09:00 / 10:00) or an id does not. Its digits
# may be split by any hyphen staff type (the ones check reads as '-': −, –, ー …), spaces, brackets,
# dots, or a slash or middle dot before a group of two digits or more (not 0・1・2); after its tenth
# or eleventh digit only more digits join it (one typed too many), so a date or a second number after
# it is not swallowed. It may follow "tel", "fax", "phone" or "mobile" directly; after any other
# letter it is part of an id.
_SEP = rf"(?:[\- \u3000{HYPHENS}()（）.．]+|[ \u3000]?[/／・･][ \u3000]?(?=[1-9１-９]\d))"
_PHONE = re.compile(r"(?:(?<=[Tt][Ee][Ll])|(?<=[Ff][Aa][Xx])|(?<=[Pp][Hh][Oo][Nn][Ee])|(?<=[Mm][Oo][Bb][Ii][Ll][Ee])"
                    rf"|(?<![\dA-Za-z]))((?:[+＋]\d(?:{_SEP}?\d){{8,14}}|[0０]{_SEP}?[1-9１-９](?:{_SEP}?\d){{8,9}})\d*)(?![\dA-Za-z])")


def mask(text: str) -> str:
    """Keep just enough to recognise: 090-****-5678, t***@example.com."""
    if "@" in text or "＠" in text:  # ＠ too: staff type full width. (The pattern's scan costs ~20 µs a message.)
        text = _EMAIL.sub(lambda m: f"{m.group(1)[0]}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: _mask_phone(m.group(1)), text)


def _mask_phone(number: str) -> str:
    digits = sum(ch.isdigit() for ch in number)
    if digits < 10:
        return number
    seen, out = 0, []
    for ch in number:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= 3 or seen > digits - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)


def notice(
    frames: Frames, mapping: Mapping, notice_id: str, recipient: str, kind: str, now: pd.Timestamp, **fields: Any
) -> Append | None:
    """An outbox row for one event, or None when that event is already in the outbox."""
    outbox = frames["outbox"]
    if notice_id in frames.derived("outbox_ids", None, None, lambda: set(outbox.data.index)):
        return None  # a set, made once a run: a look-up in the pandas index costs ~15 µs
    template = mapping.templates[kind]
    body = mask(template.body.format(**{k: "" if v is None else v for k, v in fields.items()}))
    values = {
        "created_at": now, "recipient": recipient, "kind": template.title, "body": body,
        "state": PENDING, "attempts": 0,
    }
    return new_row(outbox, notice_id, values, f"通知: {template.title}")


def is_urgent(mapping: Mapping, kind_title: str) -> bool:
    return any(t.urgent for t in mapping.templates.values() if t.title == kind_title)
