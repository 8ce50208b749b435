"""Managed tags in 顧客 タグ, the リッチメニュー, and the follow-up message after a cancel.

What the LINE tool should show for a customer follows from their bookings (CONTRACT.md, "Managed
tags and rich menu"); every change the pipeline makes to it becomes one L-Step操作 row for staff.

タグ is shared with staff: only the managed tags of the mapping are ever added or removed. The
cell is edited as text, never rebuilt: every other tag keeps its spelling, its order and the
separators around it. A removed tag takes one adjacent separator with it (the one before it, or
after it when it came first); added tags go at the end, joined by the separator the cell uses
most (ties: the one that comes first in the cell), or `tags.separator` when it has none.
Full-width and small forms of a separator (，、﹑､) are the same separator; spaces around one
belong to it. Tags are compared after NFKC, so ＶＩＰ and VIP are one tag.

A decision that needs a booking the sheet cannot read (an unreadable ステータス, 開始日時 or 結果)
waits: that tag or that menu keeps what the cell has until the booking is fixed.

Operation ids: `<操作>:<お客様番号>:<内容>:<now yyyymmddHHMM>` for a tag or menu change (the same
tag may come and go again months later; `-2`, `-3`… if that minute is taken), and
`メッセージ送信:<予約ID>:<template>` for a cancel (once per cancel: `#2`, `#3`… after one undone).
No new row is listed while an open (not 対応済) row asks for the same change of that customer (the
same tag the same way, a switch to the same menu). An open row the other way is closed by `tasks.rules.queue`, and the new
row is listed all the same: a person may have done the first in the LINE tool without ticking it,
and a 個別相談予約完了 tag left there locks the customer out of the rebooking calendar (removing a
tag the tool does not show, or switching to the menu it shows, costs a click). The cell edit and
its operation form one group, so neither lands without the other.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from string import Formatter

import numpy as np
import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping, MappingError, TagRule
from tasks.normalize import factorize_cells, normalize_value, to_text
from tasks.plan import Plan
from tasks.rules.bookings import booking_facts
from tasks.rules.common import none_if_na, set_field
from tasks.rules.operations import MESSAGE, NewOperations, cancel_titles, message_targets, nth_id, open_rows, withdrawn

ADD, REMOVE, MENU = "タグ追加", "タグ削除", "リッチメニュー切替"
TAG_REASON = "管理タグ（予約から）"
MENU_REASON = "リッチメニュー（予約から）"
MENU_COLUMN = "menu"

_WHY = {  # (rule kind, wanted) -> why, on the operation row
    ("has_active_booking", True): "有効な予約があります",
    ("has_active_booking", False): "有効な予約がなくなりました",
    ("has_held_booking", True): "来店済みの予約があります",
    ("has_held_booking", False): "来店済みの予約がなくなりました",
    ("latest_held_outcome", True): "最新の来店済み予約の結果が{outcome}です",
    ("latest_held_outcome", False): "最新の来店済み予約の結果が{outcome}ではなくなりました",
}


# --------------------------------------------------------------------------- the タグ cell as text


@lru_cache(maxsize=1 << 16)
def tag_key(text: str) -> str:
    """A tag as compared: NFKC, invisible characters and outer spaces removed (cached: the same few
    tags recur in every customer's cell)."""
    value = normalize_value("text", text)[0]
    return value if isinstance(value, str) else ""


@lru_cache(maxsize=16)
def _separator_pattern(separators: tuple[str, ...]) -> re.Pattern[str]:
    forms = set(separators)
    for sep in separators:
        forms |= _variants(sep)
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=lambda f: (-len(f), f)))
    return re.compile(rf"([^\S\n]*(?:{alternatives})[^\S\n]*)")


@lru_cache(maxsize=64)
def _variants(sep: str) -> frozenset[str]:
    """Characters NFKC turns into this separator: ，﹐ for ',', ､﹑ for '、'."""
    if len(sep) != 1:
        return frozenset()
    return frozenset(chr(c) for c in range(0x80, 0x10000)
                     if not 0xD800 <= c <= 0xDFFF and unicodedata.normalize("NFKC", chr(c)) == sep)


def split_tags(text: str, separators: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The cell's tags exactly as typed, and the separators between them (one fewer)."""
    parts = _separator_pattern(separators).split(text)
    return parts[0::2], parts[1::2]


@lru_cache(maxsize=1 << 16)
def tag_set(text: str, separators: tuple[str, ...]) -> frozenset[str]:
    return frozenset(k for k in map(tag_key, split_tags(text, separators)[0]) if k)


def rewrite_tags(text: str, add: list[str], remove: set[str], separators: tuple[str, ...], default: str) -> str:
    """The cell with `remove` (tag keys) taken out and `add` appended; all else as typed."""
    tokens, seps = split_tags(text, separators)
    pairs = [(None, tokens[0]), *zip(seps, tokens[1:], strict=True)]
    kept = [(sep, tok) for sep, tok in pairs if tag_key(tok) not in remove]
    if kept and kept[0][0] is not None:
        kept[0] = (None, kept[0][1])
    joint = Counter(seps).most_common(1)[0][0] if seps else default
    new = [t for t in add if t]
    if not any(tag_key(tok) for _, tok in kept):  # nothing left but blanks
        return joint.join(new)
    if new and not tag_key(kept[-1][1]):  # a trailing separator: fill its empty slot
        kept[-1] = (kept[-1][0], new.pop(0))
    kept += [(joint, t) for t in new]
    return "".join((sep or "") + tok for sep, tok in kept)


@lru_cache(maxsize=1 << 14)
def _rewritten(text: str, add: tuple[str, ...], remove: frozenset[str], separators: tuple[str, ...], default: str) -> str:
    """rewrite_tags once per distinct cell and change: a first run rewrites every customer's cell,
    and a team's cells hold a few hundred distinct texts."""
    return rewrite_tags(text, list(add), set(remove), separators, default)


def _cell_text(value: object) -> str:
    return "" if none_if_na(value) is None else to_text(value)


# --------------------------------------------------------------------------- what should be


def wanted(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> pd.DataFrame:
    """Per customer: one column per managed tag (True / False / <NA> when a booking cannot be
    read) and `menu` (the rich menu's name, or None when it cannot be decided). Worked out once a
    run: the tags rule and the queue rule both start from it."""
    return frames.derived("wanted_tags", now, mapping, lambda: _wanted(frames, now, mapping))


def _wanted(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> pd.DataFrame:
    customers = frames["customers"].data.index
    table = frames["bookings"]
    facts = booking_facts(frames, mapping)
    mine = (facts["customer_id"].notna() & facts["customer_id"].isin(customers)).to_numpy()
    f = facts.loc[mine, ["customer_id", "status", "start", "outcome", "active", "held", "cancelled", "deleted", "start_ok"]]
    for name in ("active", "held", "cancelled", "deleted", "start_ok"):
        f[name] = f[name].fillna(False).astype(bool)
    status_ok = table.usable("status").reindex(f.index, fill_value=True).astype(bool)
    status_ok &= f["deleted"] | f["status"].notna()
    live = f["active"] | f["held"]
    started = live & f["start_ok"] & (f["start"] <= now)
    outcome_ok = table.usable("outcome").reindex(f.index, fill_value=True).astype(bool)
    f = f.assign(
        unknown_status=~status_ok, started=started, unknown_start=live & ~f["start_ok"],
        held_unknown_start=f["held"] & ~f["start_ok"], outcome_ok=outcome_ok,
    )
    flags = ["active", "held", "unknown_status", "started", "unknown_start", "held_unknown_start"]
    any_of = f.groupby("customer_id", sort=False)[flags].any().reindex(customers, fill_value=False).astype(bool)
    unknown_status = any_of["unknown_status"]
    held = f[(f["held"] & f["start_ok"]).to_numpy()].reset_index().sort_values(["start", "booking_id"])
    latest = held.drop_duplicates("customer_id", keep="last").set_index("customer_id").reindex(customers)
    outcome_known = ~unknown_status & ~any_of["held_unknown_start"] & latest["outcome_ok"].fillna(True).astype(bool)

    out = pd.DataFrame(index=customers)
    for rule in mapping.tags.managed:
        if rule.when == "latest_held_outcome":
            value, known = latest["outcome"].eq(rule.outcome).fillna(False).astype(bool), outcome_known
        else:
            value = any_of["active" if rule.when == "has_active_booking" else "held"]
            known = value | ~unknown_status
        out[rule.tag] = pd.array(value.where(known, None), dtype="boolean")
    menus = mapping.tags.rich_menu
    after = any_of["started"]
    menu_known = after | ~(unknown_status | any_of["unknown_start"])
    menu = pd.Series(after.map({True: menus.after, False: menus.before}), dtype=object)
    out[MENU_COLUMN] = menu.where(menu_known, None)
    return out


def cancel_templates(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    """The cancelled bookings with a customer: `template` (key), `title`, `customer_id`,
    `salesperson`, `deleted`, `kind`. A deleted row counts as `cancel_default`; an unreadable
    キャンセル区分 waits (no row). Worked out once a run: the tags rule and the queue rule both use it."""
    return frames.derived("cancel_templates", None, mapping, lambda: _cancel_templates(frames, mapping))


def _cancel_templates(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    facts = booking_facts(frames, mapping)
    f = facts[(facts["cancelled"].fillna(False).astype(bool) & facts["customer_id"].notna()).to_numpy()].copy()
    f["deleted"] = f["deleted"].fillna(False).astype(bool)
    kind_ok = frames["bookings"].usable("cancel_kind").reindex(f.index, fill_value=True).astype(bool)
    f = f[(kind_ok | f["deleted"]).to_numpy()]
    kind = f["cancel_kind"].where(~f["deleted"] & f["cancel_kind"].notna(), mapping.tags.cancel_default)
    template = kind.map({k: _template_key(mapping, k) for k in kind.unique()})  # a few kinds, many bookings
    titles = template.map({t: mapping.templates[t].title for t in template.unique()})
    return pd.DataFrame({
        "customer_id": f["customer_id"], "salesperson": f["salesperson"], "deleted": f["deleted"],
        "kind": f["cancel_kind"].where(~f["deleted"], None), "template": template, "title": titles,
    }, index=f.index)


def _template_key(mapping: Mapping, kind: str) -> str:
    key = mapping.tags.cancel_messages.get(kind, mapping.tags.cancel_messages[mapping.tags.cancel_default])
    if key not in mapping.templates:
        raise MappingError(f"mapping key tags.cancel_messages.{kind}: no template {key!r} in templates")
    return key


# --------------------------------------------------------------------------- the rule


def customer_tags(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """Managed tags and rich menu of every customer, their L-Step操作, and the cancel messages."""
    want = wanted(frames, now, mapping)
    ops = NewOperations(frames, now)  # one for the three: their ids never meet (each starts with its 操作)
    parts = (_tags(frames, mapping, want, ops), _menu(frames, mapping, want, ops), _messages(frames, mapping, ops))
    # side by side, not `|`: their addresses never meet, and reconcile's combine checks the union once
    return Plan(edits=tuple(e for p in parts for e in p.edits), appends=tuple(a for p in parts for a in p.appends))


def _tags(frames: Frames, mapping: Mapping, want: pd.DataFrame, ops: NewOperations) -> Plan:
    """Customers x managed tags as boolean matrices (a first run changes most of 100k customers' cells):
    each cell is rewritten once per distinct (text, tags added, tags removed), and the operations are
    read off the matrices in customer order, then the tags' order in the mappings."""
    table = frames["customers"]
    seps = tuple(mapping.tags.separators)
    rules = {r.tag: r for r in mapping.tags.managed}
    tags = list(rules)
    # each distinct cell read once (a team's 100k cells hold a few hundred texts)
    codes, cells = factorize_cells(table.raw["tags"].reindex(want.index))
    distinct = [_cell_text(cell) for cell in cells]
    holds = [tag_set(text, seps) if text else frozenset() for text in distinct]
    present = np.array([[tag_key(t) in held for t in tags] for held in holds], dtype=bool).reshape(len(holds), len(tags))[codes]
    wish = want[tags]
    blocked = _pairs_mask(want.index, tags, _unreadable_keys(frames, (ADD, REMOVE)))  # its 対応済 decides: wait
    adding = wish.eq(True).fillna(False).to_numpy(dtype=bool) & ~present & ~blocked
    removing = wish.eq(False).fillna(False).to_numpy(dtype=bool) & present & ~blocked
    changed = np.flatnonzero(adding.any(axis=1) | removing.any(axis=1))
    if not len(changed):
        return Plan()
    keys = want.index[changed].astype(str).tolist()
    rows = changed[sorted(range(len(keys)), key=keys.__getitem__)]  # customers in key order
    cids = want.index[rows].astype(str).tolist()
    bits = 1 << np.arange(len(tags))
    add_codes, remove_codes = (adding[rows] @ bits).tolist(), (removing[rows] @ bits).tolist()
    added = {c: tuple(t for j, t in enumerate(tags) if c >> j & 1) for c in set(add_codes)}
    gone = {c: frozenset(tag_key(t) for j, t in enumerate(tags) if c >> j & 1) for c in set(remove_codes)}
    texts = [_rewritten(cell, added[a], gone[r], seps, mapping.tags.separator) or None
             for cell, a, r in zip([distinct[c] for c in codes[rows].tolist()], add_codes, remove_codes, strict=True)]
    appends = []
    for action, matrix in ((ADD, adding), (REMOVE, removing)):
        waiting = _pairs_mask(want.index[rows], tags, _open_keys(frames, (action,)))  # the same way only
        at, col = np.nonzero(matrix[rows] & ~waiting)  # row-major: by customer, then the tags' order
        pairs_cids, pairs_tags = [cids[i] for i in at.tolist()], [tags[j] for j in col.tolist()]
        why = {tag: _why(rule, action == ADD) for tag, rule in rules.items()}
        appends += ops.rows(action, ops.fresh_ids(action, pairs_cids, pairs_tags), pairs_cids, pairs_tags,
                            [why[t] for t in pairs_tags], groups=[f"lstep-tags:{c}" for c in pairs_cids])
    edits = set_field(table, "tags", pd.Series(texts, index=cids, dtype=object), TAG_REASON, group_prefix="lstep-tags:")
    return Plan(edits=tuple(edits), appends=tuple(appends))


def _pairs_mask(cids: pd.Index, tags: list[str], pairs: tuple[list[str], list[str]]) -> np.ndarray:
    """(customer, tag) pairs as a customers x tags boolean matrix (pairs of others left out), both
    looked up by pandas' hash tables: a steady run has ~200k open pairs."""
    mask = np.zeros((len(cids), len(tags)), dtype=bool)
    who, what = pairs
    rows, cols = cids.get_indexer(who), pd.Index(tags).get_indexer(what)
    found = (rows >= 0) & (cols >= 0)
    mask[rows[found], cols[found]] = True
    return mask


def _menu(frames: Frames, mapping: Mapping, want: pd.DataFrame, ops: NewOperations) -> Plan:
    table = frames["customers"]
    menus = mapping.tags.rich_menu
    blocked = set(_unreadable_keys(frames, (MENU,))[0])
    desired = want[MENU_COLUMN].dropna()
    desired = desired[~desired.index.isin(list(blocked))]
    edits = set_field(table, "rich_menu", desired, MENU_REASON, group_prefix="lstep-menu:")
    current = dict(zip(table.data.index.tolist(), table.data["rich_menu"].tolist(), strict=True))
    waiting = set(zip(*_open_keys(frames, (MENU,)), strict=True))
    # filling a blank (or unknown) cell is not a switch; an open switch to the same menu stands
    switches = [e for e in edits if current.get(e.key) in (menus.before, menus.after) and (e.key, e.new) not in waiting]
    cids, menu = [e.key for e in switches], [e.new for e in switches]
    why = ["面談が始まりました" if m == menus.after else "開始済みの予約がなくなりました" for m in menu]
    appends = ops.rows(MENU, ops.fresh_ids(MENU, cids, menu), cids, menu, why,
                       groups=[e.group for e in switches])
    return Plan(edits=tuple(edits), appends=tuple(appends))


def _messages(frames: Frames, mapping: Mapping, ops: NewOperations) -> Plan:
    cancels = cancel_templates(frames, mapping)
    if cancels.empty:
        return Plan()
    ops_table = frames["operations"].data
    listed = message_targets(ops_table.index, cancel_titles(mapping))
    standing = listed[~withdrawn(ops_table.loc[listed.index]).to_numpy()]
    key = cancels.index.to_series().astype(str) + ":" + cancels["title"]
    # once per cancel: a message withdrawn when its cancel was undone (tasks.rules.queue) does not
    # count, and the next one gets #2, #3…; a deleted row keeps the message already chosen for it
    before = (listed["booking_id"] + ":" + listed["title"]).value_counts().reindex(key, fill_value=0)
    op_ids = pd.Series([nth_id(f"{MESSAGE}:{k}", n + 1) for k, n in zip(key, before.tolist(), strict=True)],
                       index=key.index, dtype=object)
    new = (~key.isin(standing["booking_id"] + ":" + standing["title"])
           & ~(cancels["deleted"] & cancels.index.isin(standing["booking_id"]))).to_numpy()
    url = mapping.tags.rebooking_calendar_url
    c = cancels[new]
    cids, reasons = c["customer_id"].tolist(), []
    render = {key: _renderer(mapping, key, calendar_url=url) for key in c["template"].unique().tolist()}
    for bid, cid, template, deleted, kind in zip(c.index.tolist(), cids, c["template"].tolist(), c["deleted"].tolist(),
                                                 c["kind"].tolist(), strict=True):
        body = render[template](ops.name(cid))
        kind = (kind if type(kind) is str else none_if_na(kind)) or "区分なし"
        what = "の行が削除されました（キャンセル扱い）" if deleted else f"がキャンセルされました（{kind}）"
        reasons.append(f"予約 {bid} {what}。文面: {body}")
    appends = ops.rows(MESSAGE, op_ids[new].tolist(), cids, c["title"].tolist(), reasons,
                       salespeople=c["salesperson"].tolist())
    return Plan(appends=tuple(appends))


def _render(mapping: Mapping, key: str, **fields: str) -> str:
    try:
        return mapping.templates[key].body.format(**fields)
    except (KeyError, IndexError) as exc:
        raise MappingError(f"mapping key templates.{key}.body: unknown placeholder {exc}") from None


def _renderer(mapping: Mapping, key: str, calendar_url: str) -> Callable[[str], str]:
    """The template's body as a function of the customer's name: formatted once with a stand-in for
    the name, which each message then replaces (a first run renders ~95k cancel messages). A body
    that names it any other way than a plain `{customer_name}` is formatted each time."""
    body = mapping.templates[key].body
    # plain: every "customer_name" in the text is a bare {customer_name} field (not {customer_name[0]},
    # not in a spec, not escaped text)
    plain = sum(name == "customer_name" and not spec and conversion is None
                for _, name, spec, conversion in Formatter().parse(body)) == body.count("customer_name")
    if not plain or _NAME in body or _NAME in calendar_url:
        return lambda name: _render(mapping, key, customer_name=name, calendar_url=calendar_url)
    shaped = _render(mapping, key, customer_name=_NAME, calendar_url=calendar_url)
    return lambda name: shaped.replace(_NAME, name)


_NAME = "\x00"  # a stand-in no template holds (one that does is formatted each time)


# --------------------------------------------------------------------------- helpers


def _why(rule: TagRule, wished: bool) -> str:
    return _WHY[(rule.when, wished)].format(outcome=rule.outcome or "")


def _open_keys(frames: Frames, actions: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(customers, contents) of the operation rows whose 対応済 is read as not ticked."""
    table = frames["operations"]
    return _keys(table.data, open_rows(table).to_numpy(), actions)


def _unreadable_keys(frames: Frames, actions: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(customers, contents) of the operation rows whose 対応済 cannot be read."""
    table = frames["operations"]
    return _keys(table.data, ~table.usable("done").to_numpy(), actions)


def _keys(ops: pd.DataFrame, rows: np.ndarray, actions: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Three columns taken before the rows: L-Step操作 only grows, and a steady run at 100k meets
    300,000 rows of twelve columns, twice a rule."""
    ops = ops.loc[rows, ["action", "customer_id", "content"]]
    ops = ops[(ops["action"].isin(actions) & ops["customer_id"].notna()).to_numpy()]
    return ops["customer_id"].astype(str).tolist(), ops["content"].astype(str).tolist()
