"""The mappings: the sheet contract as validated data.

Every name a team may change (tabs, headers, vocabularies, the rules' numbers, message words)
lives in `mappings/*.yaml`; the code only knows fields. A bad mapping stops the run at start with
the key that is wrong, before anything is read or written.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "mappings"

Owner = Literal["staff", "pipeline", "check"]
CellType = Literal[
    "text", "name", "kana", "phone", "email", "datetime", "date", "check", "int", "url",
    "line_user_id", "enum", "tags",
]


class MappingError(ValueError):
    """A mapping file is missing, unreadable or invalid."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(Strict):
    header: str
    field: str
    owner: Owner
    type: CellType = "text"
    required: bool = False
    vocab: str | None = None
    refers: str | None = None


class Tab(Strict):
    title: str
    kind: Literal["staff", "pipeline"]
    key: str | None
    spreadsheet: str = "main"
    columns: tuple[Column, ...]

    @model_validator(mode="after")
    def _fields_unique(self) -> Tab:
        for attr in ("field", "header"):
            names = [getattr(c, attr) for c in self.columns]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {attr}: {', '.join(sorted(dup))}")
        if self.key is not None and self.key not in {c.field for c in self.columns}:
            raise ValueError(f"key {self.key!r} is not one of the tab's fields")
        return self

    def column(self, field: str) -> Column:
        for c in self.columns:
            if c.field == field:
                return c
        raise KeyError(f"{self.title}: no field {field!r}")

    @property
    def fields(self) -> list[str]:
        return [c.field for c in self.columns]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]


class StatusGroups(Strict):
    active: tuple[str, ...]
    held: tuple[str, ...]
    cancelled: tuple[str, ...]
    late_cancel: tuple[str, ...]


class Step(Strict):
    name: str
    hours_before: float | None = None
    days_before: int | None = None
    at_time: str | None = None  # "HH:MM", with days_before: "N days before at HH:MM"
    at: Literal["first_seen"] | None = None

    @model_validator(mode="after")
    def _one_timing(self) -> Step:
        timings = [self.hours_before is not None, self.days_before is not None, self.at is not None]
        if sum(timings) != 1:
            raise ValueError("a step needs exactly one of hours_before, days_before (+ at_time), at")
        if (self.at_time is None) != (self.days_before is None):
            raise ValueError("days_before and at_time go together")
        return self


class Series(Strict):
    name: str
    menus: tuple[str, ...]
    steps: tuple[Step, ...]


class Reminders(Strict):
    protected_series: str
    series: tuple[Series, ...]
    chase_hours_before_due: float = 1


class TagRule(Strict):
    tag: str
    when: Literal["has_active_booking", "has_held_booking", "latest_held_outcome"]
    outcome: str | None = None


class RichMenu(Strict):
    before: str
    after: str


class Tags(Strict):
    managed: tuple[TagRule, ...]
    separators: tuple[str, ...]
    rich_menu: RichMenu
    cancel_messages: dict[str, str]
    rebooking_calendar_url: str
    export_columns: dict[str, str]


class PaymentLinks(Strict):
    maker_role: str
    overdue_hours: float = 24


class Alerts(Strict):
    reschedule_without_actions: str
    salesperson_changed: str
    overlap: str
    blacklisted: str
    caution: str
    second_meeting_other_salesperson: str
    no_outcome: str
    no_thanks_line: str
    no_rebooking: str
    thanks_line_hours: float = 24
    ops_role: str = "運営"


class QuietHours(Strict):
    start: str
    end: str


class Template(Strict):
    title: str
    body: str
    urgent: bool = False


class Mapping(Strict):
    tabs: dict[str, Tab]
    vocab: dict[str, tuple[str, ...]]
    status_groups: StatusGroups
    check_truths: tuple[str, ...]
    meeting_minutes: int = Field(gt=0)
    lookback_days: int = Field(ge=0)
    quiet_hours: QuietHours
    max_send_attempts: int = Field(gt=0)
    reminders: Reminders
    tags: Tags
    payment_links: PaymentLinks
    alerts: Alerts
    templates: dict[str, Template]

    @model_validator(mode="after")
    def _references(self) -> Mapping:
        for name, tab in self.tabs.items():
            for c in tab.columns:
                if c.type == "enum" and c.vocab not in self.vocab:
                    raise ValueError(f"tabs.{name}.{c.field}: unknown vocab {c.vocab!r}")
                if c.refers is not None and c.refers not in self.tabs:
                    raise ValueError(f"tabs.{name}.{c.field}: refers to unknown tab {c.refers!r}")
        statuses = set(self.vocab.get("statuses", ()))
        for group, values in self.status_groups.model_dump().items():
            unknown = set(values) - statuses
            if unknown:
                raise ValueError(f"status_groups.{group}: not in vocab.statuses: {sorted(unknown)}")
        return self

    def tab(self, name: str) -> Tab:
        return self.tabs[name]

    @cached_property
    def tab_by_title(self) -> dict[str, str]:
        return {t.title: n for n, t in self.tabs.items()}


def load_mapping(directory: Path | str | None = None) -> Mapping:
    """Merge every `*.yaml` in the directory (top-level keys must not repeat) and validate."""
    directory = Path(directory) if directory else DEFAULT_DIR
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise MappingError(f"no mapping files (*.yaml) in {directory}")
    merged: dict = {}
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise MappingError(f"{path.name}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise MappingError(f"{path.name}: the top level must be a mapping of keys")
        for key in data:
            if key in merged:
                raise MappingError(f"{path.name}: key {key!r} is already set by another file")
        merged.update(data)
    try:
        return Mapping.model_validate(merged)
    except ValidationError as exc:
        raise MappingError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"mapping key {where}: {err['msg']}")
    return "invalid mapping:\n  " + "\n  ".join(lines)
