"""The mappings: the sheet contract as validated data.

Every name a team may change (tabs, headers, vocabularies, the rules' numbers, message words)
lives in `mappings/*.yaml`; the code only knows fields. A bad mapping stops the run at start with
the key that is wrong, before anything is read or written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "mappings"
CHANGELOG = "changelog"  # the tab every run appends its changes to (one row a cell); no rule reads it

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
        if self.at_time is not None:
            hh, _, mm = self.at_time.partition(":")
            if not (hh.isdigit() and mm.isdigit() and len(mm) == 2 and int(hh) < 24 and int(mm) < 60):
                raise ValueError(f"at_time {self.at_time!r} is not HH:MM")
        return self


class Series(Strict):
    name: str
    menus: tuple[str, ...]
    steps: tuple[Step, ...]


class Reminders(Strict):
    protected_series: str
    series: tuple[Series, ...]
    chase_hours_before_due: float = 1

    @model_validator(mode="after")
    def _names(self) -> Reminders:
        names = [s.name for s in self.series]
        if len(set(names)) != len(names):
            raise ValueError("series names must be unique")
        if self.protected_series not in names:
            raise ValueError(f"protected_series {self.protected_series!r} is not one of the series")
        for s in self.series:
            steps = [st.name for st in s.steps]
            if len(set(steps)) != len(steps):
                raise ValueError(f"series {s.name!r}: step names must be unique")
            if any(":" in n for n in [s.name, *steps]):
                raise ValueError(f"series {s.name!r}: ':' separates a リマインドID's parts, not allowed in names")
        return self


class TagRule(Strict):
    tag: str
    when: Literal["has_active_booking", "has_held_booking", "latest_held_outcome"]
    outcome: str | None = None

    @model_validator(mode="after")
    def _outcome_with_latest(self) -> TagRule:
        if (self.when == "latest_held_outcome") != (self.outcome is not None):
            raise ValueError("outcome goes with (and only with) when: latest_held_outcome")
        return self


class RichMenu(Strict):
    before: str
    after: str


class TagExport(Strict):
    """The bulk-tag CSV's column names (the LINE tool's import layout is not public)."""

    key_column: str = "ユーザーID"  # the customer's LINE user id
    name_column: str | None = None  # optional: the customer's name, for the person checking the file
    tag_columns: dict[str, str] = Field(default_factory=dict)  # tag -> header (default: the tag itself)


class LStepApi(Strict):
    """The optional REST client; the token comes from the environment (LSTEP_API_TOKEN), never a mapping."""

    base_url: str = "https://api.lineml.jp/v2/api"
    requests_per_second: float = Field(default=10, gt=0)
    tag_ids: dict[str, int | str] = Field(default_factory=dict)  # tag -> the tool's tag id (else GET /tags)


MAX_MANAGED_TAGS = 62


class Tags(Strict):
    managed: tuple[TagRule, ...]
    separators: tuple[str, ...]
    separator: str = "、"  # appended between tags in a cell where staff used no separator yet
    rich_menu: RichMenu
    cancel_messages: dict[str, str]  # キャンセル区分 -> template key (mappings/templates.yaml)
    cancel_default: str = "キャンセルのみ"  # what a blank キャンセル区分 (or a deleted row) counts as
    rebooking_calendar_url: str
    export: TagExport = Field(default_factory=TagExport)
    api: LStepApi = Field(default_factory=LStepApi)

    @model_validator(mode="after")
    def _consistent(self) -> Tags:
        names = [r.tag for r in self.managed]
        if len(set(names)) != len(names):
            raise ValueError("managed: a tag is listed twice")
        if len(names) > MAX_MANAGED_TAGS:  # the tags rule keys a customer's changes by a 64-bit mask of them
            raise ValueError(f"managed: at most {MAX_MANAGED_TAGS} tags, {len(names)} given")
        if not self.separators or "" in self.separators:
            raise ValueError("separators: give at least one, none empty")
        if self.separator not in self.separators:
            raise ValueError(f"separator {self.separator!r} is not one of separators")
        clash = [n for n in names if any(s in n for s in self.separators)]
        if clash:
            raise ValueError(f"managed: tag names contain a separator: {clash}")
        if self.cancel_default not in self.cancel_messages:
            raise ValueError(f"cancel_default {self.cancel_default!r} is not a key of cancel_messages")
        unknown = set(self.export.tag_columns) - set(names)
        if unknown:
            raise ValueError(f"export.tag_columns: not managed tags: {sorted(unknown)}")
        return self


class PaymentLinkStates(Strict):
    """The words of 決済リンク依頼.状態 (staff may type 不要; the pipeline writes the others)."""

    requested: str = "依頼中"
    created: str = "作成済"
    sent: str = "送付済"
    cancelled: str = "取消"
    not_needed: str = "不要"


class PaymentLinks(Strict):
    maker_role: str
    overdue_hours: float = 24
    won_outcome: str = "成約"  # 結果 that calls for a payment link
    states: PaymentLinkStates = Field(default_factory=PaymentLinkStates)

    @model_validator(mode="after")
    def _distinct_states(self) -> PaymentLinks:
        words = list(self.states.model_dump().values())
        if len(set(words)) != len(words):
            raise ValueError("states: every state needs its own word")
        return self


class Digest(Strict):
    """`salesops digest`: each person's open items in one end-of-day message."""

    roles: tuple[str, ...] = ("営業", "決済リンク作成")  # who gets one (active staff with these roles)
    max_items: int = Field(default=30, gt=0)  # listed per message; the rest is counted


class Duplicates(Strict):
    """重複候補: a key (a shared office phone) that more customers hold than this is reported, not paired."""

    max_group: int = Field(default=20, ge=2)


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
    first_meeting_menu: str = "個別相談"  # alert 6 compares a 2回目面談 with the customer's held first meeting
    second_meeting_menu: str = "2回目面談"
    run_actions_done: str = "実行する"  # alert 1 holds until アクション実行 says this
    thanks_outcomes: tuple[str, ...] = ("成約", "保留")  # alert 8: the outcomes that need a thanks LINE
    rebooking_cancel_kind: str = "日程変更希望"  # alert 9: the キャンセル区分 that expects a rebooking

    @model_validator(mode="after")
    def _caution_found_by_its_start(self) -> Alerts:
        """The digest finds alert 5 by its first words to leave it out, whatever memo it quotes: they
        must be there, and be no other alert's first words."""
        start = self.caution.split("{", 1)[0]
        if not start.strip():
            raise ValueError(f"caution {self.caution!r} must start with fixed words before {{memo}} "
                             "(for example ❗要注意: {memo})")
        for name in ("reschedule_without_actions", "salesperson_changed", "overlap", "blacklisted",
                     "second_meeting_other_salesperson", "no_outcome", "no_thanks_line", "no_rebooking"):
            other = getattr(self, name).split("{", 1)[0]
            if other.startswith(start) or start.startswith(other):
                raise ValueError(f"caution {self.caution!r} and {name} {getattr(self, name)!r} start alike: "
                                 "give the caution alert fixed words of its own")
        return self


_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


class QuietHours(Strict):
    """Tokyo clock times, kept as zero-padded HH:MM: tell.in_quiet_hours compares them as text."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        match = _CLOCK.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not a time HH:MM (for example 21:00)")
        return f"{int(match[1]):02d}:{match[2]}"


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
    digest: Digest = Field(default_factory=Digest)
    duplicates: Duplicates = Field(default_factory=Duplicates)
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


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, in one line, without pyyaml's quote of the lines around it: a routes file's
    lines hold tokens, and an error is printed and logged."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


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
            raise MappingError(f"{path.name}: not valid YAML: {yaml_problem(exc)}") from None
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
