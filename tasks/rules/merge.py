"""The merge of the duplicate customers staff approved: in the contract's order, each step whole or not at all.

Run by its own flow (`flows/merge.py`), never by the ordinary reconcile: it is the one rule that
writes staff-owned cells, and it does so only because staff ticked 承認 on a 重複候補 row that is
統合可 (the reservation system's exact-name rule, checked again against the names as they are now).

Approved pairs are joined into components (A~B and B~C approved: A, B and C are one person), unless
two members are a pair staff marked 却下 (then the component waits, said in the run's notes); each
component keeps one survivor, chosen by the contract's 統合先 rule over the whole component, and
every other member is merged into it. A component's changes form one group (`merge:<survivor>`):

1. 統合履歴: one row per source (keyed by 統合元), its every cell as read, as JSON;
2. its bookings, reminders, payment-link requests and L-Step operations point to the survivor;
3. the survivor's blank staff cells are filled from the sources (never overwritten; a placeholder
   e-mail counts as blank; a name or a reading only whole), the sources' memos are joined to the survivor's, and the sources'
   own tags are added (managed tags are left to the tags rule, which derives them from the moved
   bookings and lists the L-Step操作 for the survivor's LINE account);
4. the source rows leave 顧客; the approved 重複候補 rows become 統合済.

Those are written one step at a time (`STEPS`, `next_step`: one compare-and-set write each, in that
order, whatever spreadsheets the tabs live in), so a merge that stops anywhere has done a prefix of its
steps: no source row leaves 顧客 before its snapshot and its references have landed. Check-only
edits assert that the survivor's and the sources' staff cells are still as read, so each step
lands whole or waits for the next pass. Every step is idempotent: a rerun after a crash sees what
already landed (the 統合履歴 row, moved rows, filled cells, joined memos) and plans only what is
left; a source already deleted (it is in 統合履歴 but no longer in 顧客) gets its leftover
references moved and its candidate rows marked.
"""

from __future__ import annotations

import json

import pandas as pd

from tasks.frames import Frames, Table
from tasks.mapping import Mapping
from tasks.normalize import to_text
from tasks.plan import Append, Delete, Edit, Plan
from tasks.rules.common import new_row, none_if_na
from tasks.rules.duplicates import MERGED, PROPOSED, REJECTED, YES, customer_keys
from tasks.rules.tags import rewrite_tags, split_tags, tag_key, tag_set

REFERRING = ("bookings", "reminders", "payment_links", "operations")  # their お客様番号 moves to the survivor
MEMOS = ("caution_memo", "blacklist_memo", "memo")  # joined, so a caution or a blacklist is never lost
MEMO_JOIN = "\n"
NAME_UNITS = (("family_name", "given_name"), ("family_kana", "given_kana"))  # filled whole, from one donor, or not at all
DATE_KINDS = ("date", "datetime")
STEPS = ("history", "moved", "survivor", "removed", "marked")  # the contract's order: one write each


def merge_approved(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """The plan that merges every approved, mergeable component, and finishes interrupted merges."""
    customers = frames["customers"].data
    merged_to = _history(frames)
    pairs = _approved_pairs(frames, merged_to)
    rejected = _rejected(frames)
    plan = Plan()
    for members in _components(pairs):
        refused = sorted(f"{a}~{b}" for a, b in rejected if a in members and b in members)
        if refused:  # approvals of other pairs would join two customers staff said are not one person
            plan = plan | Plan(log=(f"merge of {', '.join(sorted(members))} waits: 重複候補 {', '.join(refused)} "
                                    "is 却下, and the approved pairs would merge it; untick one of them",))
            continue
        keys = customer_keys(customers.loc[sorted(members)])
        order = list(keys.sort_values("survivor_rank").index)
        survivor = _survivor(order, merged_to)
        sources = [m for m in order if m != survivor]
        astray = [m for m in sources if merged_to.get(m, survivor) != survivor and merged_to[m] in customers.index]
        if astray:  # begun towards a customer no longer approved with it: waits until staff approve that pair again
            plan = plan | Plan(log=(f"merge of {', '.join(astray)} waits: 統合履歴 names another survivor",))
            continue
        rows = pairs[pairs["customer_a"].isin(members)]
        plan = plan | _merge(frames, mapping, now, survivor, sources, rows, merged_to)
    return (plan | _finish(frames, now, merged_to)).sorted()


def step_of(change: Edit | Append | Delete) -> int:
    """Which of STEPS a change of a merge plan belongs to."""
    if change.tab == "merges":
        return STEPS.index("history")
    if change.tab in REFERRING:
        return STEPS.index("moved")
    if change.tab == "customers":
        return STEPS.index("removed" if isinstance(change, Delete) else "survivor")
    return STEPS.index("marked")


def next_step(plan: Plan) -> Plan:
    """Of every merge (a group), the changes of its first step still to do, and its check-only guards.

    A step lands whole or waits (the guards make every step depend on the rows as read); the next
    pass plans again from the sheet, so each pass moves every merge one step on.
    """
    first: dict[str | None, int] = {}
    for change in (*plan.edits, *plan.appends, *plan.deletes):
        if not getattr(change, "check_only", False):
            first[change.group] = min(first.get(change.group, len(STEPS)), step_of(change))

    def due(change: Edit | Append | Delete) -> bool:
        return change.group in first and (getattr(change, "check_only", False) or step_of(change) == first[change.group])

    return Plan(edits=tuple(filter(due, plan.edits)), appends=tuple(filter(due, plan.appends)),
                deletes=tuple(filter(due, plan.deletes)), problems=plan.problems, log=plan.log)


# --------------------------------------------------------------------------- what to merge


def _history(frames: Frames) -> dict[str, str]:
    """統合元 -> 統合先 of every merge that has at least begun."""
    data = frames["merges"].data
    survivors = data["survivor"].dropna()
    return {str(k): str(v) for k, v in survivors.items() if str(v)}


def _approved_pairs(frames: Frames, merged_to: dict[str, str]) -> pd.DataFrame:
    """重複候補 rows to act on: 承認 ticked, 統合可, both customers there, names still identical.

    A row already 統合済 whose customers are both still there is an interrupted merge (its
    統合履歴 row exists): it is finished, never started again.
    """
    table = frames["duplicates"]
    d = table.data
    if d.empty:
        return d.assign(candidate_id=pd.Series(dtype=object))
    a, b = d["customer_a"].astype(object), d["customer_b"].astype(object)
    keyed = pd.Series(d.index, index=d.index).eq(a + "~" + b).fillna(False)
    customers = frames["customers"].data.index
    both = a.isin(customers) & b.isin(customers)
    begun = a.isin(list(merged_to)) | b.isin(list(merged_to))
    state = d["state"]
    live = (state == PROPOSED) | ((state == MERGED) & begun)
    rows = d[(d["approved"].astype(bool) & (d["mergeable"] == YES) & keyed & both & live).to_numpy()]
    if rows.empty:
        return rows.assign(candidate_id=pd.Series(dtype=object))
    names = customer_keys(frames["customers"].data.loc[pd.unique(pd.concat([rows["customer_a"], rows["customer_b"]]))])
    rule = names["name_rule"]
    same = rule.reindex(rows["customer_a"]).to_numpy() == rule.reindex(rows["customer_b"]).to_numpy()
    same &= rule.reindex(rows["customer_a"]).to_numpy() != ""
    rows = rows[same]
    return rows.assign(candidate_id=rows.index)


def _rejected(frames: Frames) -> list[tuple[str, str]]:
    """The pairs staff marked 却下: never one person, whatever else is approved."""
    d = frames["duplicates"].data
    rows = d[(d["state"] == REJECTED).to_numpy()]
    return list(zip(rows["customer_a"].astype(str), rows["customer_b"].astype(str), strict=True))


def _components(pairs: pd.DataFrame) -> list[set[str]]:
    """Union-find over the approved pairs (a few, chosen by staff): the connected components."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(pairs["customer_a"], pairs["customer_b"], strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, set[str]] = {}
    for x in parent:
        groups.setdefault(find(x), set()).add(x)
    return [groups[k] for k in sorted(groups)]


def _survivor(order: list[str], merged_to: dict[str, str]) -> str:
    """The contract's rule over the component; an interrupted merge keeps the survivor it began with."""
    begun = [merged_to[m] for m in order if m in merged_to and merged_to[m] in order]
    return min(begun, key=order.index) if begun else order[0]


# --------------------------------------------------------------------------- one component


def _merge(
    frames: Frames, mapping: Mapping, now: pd.Timestamp, survivor: str, sources: list[str],
    pairs: pd.DataFrame, merged_to: dict[str, str],
) -> Plan:
    customers = frames["customers"]
    group = f"merge:{survivor}"
    reason = f"重複の統合 {', '.join(sources)} → {survivor}"
    filled = _survivor_cells(customers, mapping, survivor, sources)
    edits = [Edit("customers", survivor, f, _raw(customers, survivor, f), v, reason, group) for f, v in filled.items()]
    for member in [survivor, *sources]:
        edits += [
            Edit("customers", member, f, _raw(customers, member, f), _raw(customers, member, f), reason, group, True)
            for f in _guarded(customers) if not (member == survivor and f in filled)
        ]
    moved: dict[str, list[str]] = {}
    for tab in REFERRING:
        table = frames[tab]
        refs = _references(table)
        for key, cid in refs[refs.isin(sources)].items():
            edits.append(Edit(tab, str(key), "customer_id", _raw(table, key, "customer_id"), survivor, reason, group))
            if tab == "bookings":
                moved.setdefault(cid, []).append(str(key))
    edits += _mark_merged(frames, pairs, now, reason, group)
    appends: list[Append] = []
    history = frames["merges"]
    for source in sources:
        if source in merged_to:
            continue  # its snapshot was taken when the merge began
        approvals = pairs[(pairs["customer_a"] == source) | (pairs["customer_b"] == source)]["candidate_id"]
        appends.append(new_row(history, source, {
            "merged_at": now,
            "survivor": survivor,
            "snapshot": _snapshot(customers, source),
            "moved_bookings": ", ".join(sorted(moved.get(source, []))),
            "approver": f"重複候補 {', '.join(sorted(approvals))} の承認",
        }, reason, group))
    deletes = [Delete("customers", source, reason, group) for source in sources]
    return Plan(edits=tuple(edits), appends=tuple(appends), deletes=tuple(deletes))


def _survivor_cells(customers: Table, mapping: Mapping, survivor: str, sources: list[str]) -> dict[str, object]:
    """The survivor's cells that change: blanks filled, memos joined, the sources' own tags added."""
    out: dict[str, object] = {}
    for column in customers.spec.columns:
        f = column.field
        if column.owner != "staff" or f == customers.spec.key or f not in customers.present:
            continue
        if f in MEMOS:
            text = _cell(customers, survivor, f)
            for source in sources:
                more = _cell(customers, source, f)
                if more and f"\n{more}\n" not in f"\n{text}\n":  # joined once, even by a rerun
                    text = f"{text}{MEMO_JOIN}{more}" if text else more
            if text != _cell(customers, survivor, f):
                out[f] = text
        elif all(_blank(customers, survivor, g) for g in _unit(customers, f)):
            donor = next((s for s in sources if not all(_blank(customers, s, g) for g in _unit(customers, f))), None)
            if donor is not None and not _blank(customers, donor, f):
                value = customers.data.at[donor, f] if column.type in DATE_KINDS else None
                out[f] = none_if_na(value) if none_if_na(value) is not None else _raw(customers, donor, f)
    if "tags" in customers.present:
        tags = _merged_tags(customers, mapping, survivor, sources)
        if tags is not None:
            out["tags"] = tags
    return out


def _unit(customers: Table, field: str) -> tuple[str, ...]:
    """The cells filled together with `field`: a name typed all in 姓 must not get a 名 as well."""
    unit = next((u for u in NAME_UNITS if field in u), (field,))
    return tuple(f for f in unit if f in customers.present)


def _merged_tags(customers: Table, mapping: Mapping, survivor: str, sources: list[str]) -> str | None:
    separators = tuple(mapping.tags.separators)
    text = _cell(customers, survivor, "tags")
    have = set(tag_set(text, separators))
    managed = {tag_key(rule.tag) for rule in mapping.tags.managed}
    add = []
    for source in sources:
        for token in split_tags(_cell(customers, source, "tags"), separators)[0]:
            key = tag_key(token)
            if key and key not in have and key not in managed:
                add.append(token.strip())
                have.add(key)
    return rewrite_tags(text, add, set(), separators, mapping.tags.separator) if add else None


def _mark_merged(frames: Frames, pairs: pd.DataFrame, now: pd.Timestamp, reason: str, group: str) -> list[Edit]:
    """The approved rows become 統合済; 承認 and 統合可 must still read as they did."""
    table = frames["duplicates"]
    edits = []
    for cid in pairs.index[(pairs["state"] != MERGED).to_numpy()]:
        edits.append(Edit("duplicates", cid, "state", _raw(table, cid, "state"), MERGED, reason, group))
        edits.append(Edit("duplicates", cid, "processed_at", _raw(table, cid, "processed_at"), now, reason, group))
        for f in ("approved", "mergeable"):
            edits.append(Edit("duplicates", cid, f, _raw(table, cid, f), _raw(table, cid, f), reason, group, True))
    return edits


# --------------------------------------------------------------------------- interrupted merges


def _finish(frames: Frames, now: pd.Timestamp, merged_to: dict[str, str]) -> Plan:
    """Sources already gone from 顧客 (in 統合履歴): move what still points at them, mark their rows."""
    customers = frames["customers"].data.index
    final = {s: t for s in merged_to if s not in customers and (t := _final(s, merged_to, customers))}
    if not final:
        return Plan()
    edits = []
    for tab in REFERRING:
        table = frames[tab]
        refs = _references(table)
        for key, cid in refs[refs.isin(list(final))].items():
            target = final[cid]
            edits.append(Edit(tab, str(key), "customer_id", _raw(table, key, "customer_id"), target,
                              f"重複の統合 {cid} → {target}（残りの移動）", f"merge:{target}"))
    d = frames["duplicates"].data
    if not d.empty:
        a, b = d["customer_a"].map(lambda x: final.get(x, x)), d["customer_b"].map(lambda x: final.get(x, x))
        done = d["approved"].astype(bool) & (d["state"] == PROPOSED) & (a == b) & a.isin(customers)
        for cid in d.index[done.to_numpy()]:
            table = frames["duplicates"]
            target = a[cid]
            reason, group = f"重複の統合 → {target}（完了の記録）", f"merge:{target}"
            edits.append(Edit("duplicates", cid, "state", _raw(table, cid, "state"), MERGED, reason, group))
            edits.append(Edit("duplicates", cid, "processed_at", _raw(table, cid, "processed_at"), now, reason, group))
    return Plan(edits=tuple(edits))


def _final(source: str, merged_to: dict[str, str], customers: pd.Index) -> str | None:
    """Where a merged customer lives now: its survivor, or that survivor's, and so on."""
    seen = {source}
    current = merged_to[source]
    while current not in customers:
        if current in seen or current not in merged_to:
            return None
        seen.add(current)
        current = merged_to[current]
    return current


# --------------------------------------------------------------------------- cells


def _references(table: Table) -> pd.Series:
    """お客様番号 of every row as text (also where check dropped it as pointing at no customer)."""
    if not table.exists or "customer_id" not in table.present or table.data.empty:
        return pd.Series(dtype=object)
    data = table.data["customer_id"]
    raw = table.raw["customer_id"].reindex(data.index)
    text = raw.map(lambda v: to_text(v).strip() if none_if_na(v) is not None else None)
    return data.astype(object).where(data.notna(), text).dropna().astype(str)


def _guarded(customers: Table) -> list[str]:
    """Cells a merge depends on: every staff cell, and タグ."""
    return [c.field for c in customers.spec.columns
            if (c.owner == "staff" or c.field == "tags") and c.field in customers.present]


def _raw(table: Table, key: str, field: str) -> object:
    return table.raw_value(key, field)


def _cell(table: Table, key: str, field: str) -> str:
    value = table.raw_value(key, field)
    return "" if value is None else to_text(value).strip()


def _blank(customers: Table, key: str, field: str) -> bool:
    """Blank as staff mean it; the booking system's placeholder e-mail counts as no e-mail."""
    if not _cell(customers, key, field):
        return True
    if field == "email":
        return customers.data.at[key, "email"] is None and not customers.bad.at[key, "email"]
    return False


def _snapshot(customers: Table, key: str) -> str:
    """The source row's every cell as read, by header, as JSON (nothing is lost with the row)."""
    cells = {c.header: _cell(customers, key, c.field) for c in customers.spec.columns if c.field in customers.present}
    return json.dumps(cells, ensure_ascii=False)
