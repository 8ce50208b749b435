"""重複候補: customers that look like the same person, and 顧客.重複候補.

Blocking, never all pairs: every customer gets a few normalized keys (the full kanji name with
variant kanji folded, the phone in E.164, the e-mail, the LINE user id); a pair is a candidate when
it shares a key, so pairs are only formed inside each key's group, and groups are small. A key that
too many customers share (a shared office phone) is reported as a problem instead of exploding.

統合可 follows the reservation system's own rule: the full names must be identical after NFKC and
the removal of every space. Variant folding (髙→高) and a matching reading only find candidates for
review; they never make a pair mergeable. Staff decide: 却下 rows stay and are never proposed
again; a pair that stops matching is withdrawn (its row deleted) unless it is 却下 or 統合済.
A 状態 that is none of the contract's words (「却下します」) is a problem, and its row is left as it
is until staff fix it: the pipeline writes 状態 only over a blank or its own 提案 / 統合不可.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from tasks.frames import Frames, Problem, Table
from tasks.mapping import Mapping
from tasks.normalize import kana_key, name_fold
from tasks.plan import Delete, Plan
from tasks.rules.common import new_row, set_field

PROPOSED, MERGED, REJECTED, UNMERGEABLE = "提案", "統合済", "却下", "統合不可"
YES, NO = "可", "不可"  # 統合可: text, so staff can read it and filter on it
FROZEN = (REJECTED, MERGED)  # rows the pipeline never touches again
STATES = (PROPOSED, UNMERGEABLE, *FROZEN)  # the contract's 状態; anything else staff typed is left alone
BAD_STATE = "状態は次のどれかにしてください: {}（この行は直るまで更新しません）"
REASON = "重複候補"
LIST_SEPARATOR = ", "

# Blocking keys, in the order 一致項目 lists them; the name key is special (see `matched_on`).
KEYS = ("name", "phone", "email", "line")
LABELS = {
    "name": "氏名",  # identical under the reservation system's rule
    "name_variant": "氏名(異体字)",  # equal only once variant kanji / an honorific are folded
    "kana": "フリガナ",
    "phone": "電話番号",
    "email": "メールアドレス",
    "line": "LINEユーザーID",
}
KEY_FIELD = {"name": "family_name", "phone": "phone", "email": "email", "line": "line_user_id"}
PAIR_FIELDS = ("customer_a", "customer_b", "name_a", "name_b", "matched_on", "mergeable", "survivor")

_DIGITS = re.compile(r"\d+")


# --------------------------------------------------------------------------- keys and order


def customer_keys(customers: pd.DataFrame) -> pd.DataFrame:
    """Per customer: the blocking keys, the exact-name key, and the two orders the contract uses.

    `name_rule` is the reservation system's rule (NFKC, every space removed; check has already
    applied NFKC and made every run of spaces one ASCII space); `name` folds variant kanji and an
    honorific on top. `id_rank` orders ids naturally (C9 before C10, 9 before 10); `survivor_rank`
    orders by the contract's 統合先 rule: a LINE user id first, then the earlier 初回登録日 (unknown
    last), then the smaller id.
    """
    keys = pd.DataFrame(index=customers.index)
    full = _text(customers["family_name"]) + _text(customers["given_name"])
    keys["name_rule"] = full.str.replace(" ", "", regex=False)
    keys["name"] = _per_unique(keys["name_rule"], name_fold)
    keys["phone"] = customers["phone"]
    keys["email"] = customers["email"]
    keys["line"] = customers["line_user_id"]
    keys["display"] = (_text(customers["family_name"]) + " " + _text(customers["given_name"])).str.strip()
    keys["id_rank"] = id_ranks(customers.index)
    no_line = customers["line_user_id"].isna().to_numpy()
    registered = pd.to_datetime(customers["registered_on"], errors="coerce")
    days = registered.to_numpy(dtype="datetime64[D]").astype(np.int64)
    days[registered.isna().to_numpy()] = np.iinfo(np.int64).max
    order = np.lexsort((keys["id_rank"].to_numpy(), days, no_line))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    keys["survivor_rank"] = rank
    return keys


def id_ranks(ids: pd.Index) -> np.ndarray:
    """Position of each id in natural order (digit runs compared as numbers), ties by the text."""
    texts = np.asarray(ids.astype(str), dtype=str)
    if _one_shape(texts):  # C000001 … C100000: the text order is the natural one
        order = np.argsort(texts, kind="stable")
    else:
        padded = [_DIGITS.sub(_pad, t) for t in texts.tolist()]
        order = np.lexsort((texts, np.array(padded, dtype=str)))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    return rank


def _one_shape(texts: np.ndarray) -> bool:
    """All ids of one length with their digits in the same places (compared as code points, at once)."""
    if len(texts) < 2:
        return True
    codes = texts.view(np.uint32).reshape(len(texts), -1)
    shape = np.where((codes >= ord("0")) & (codes <= ord("9")), ord("0"), codes)
    return bool((shape == shape[0]).all())


def _pad(match: re.Match[str]) -> str:
    return match.group().zfill(24)


def reading(customers: pd.DataFrame, ids: pd.Index) -> pd.Series:
    """The kana reading (hiragana, spaces removed) of some customers; "" when blank."""
    sub = customers.loc[ids]
    return _per_unique(_text(sub["family_kana"]) + _text(sub["given_kana"]), kana_key)


# --------------------------------------------------------------------------- blocking


def find_candidates(customers: pd.DataFrame, max_group: int) -> tuple[pd.DataFrame, list[tuple[str, str, list[str]]]]:
    """Every candidate pair, and the key groups too big to pair (kind, value, member ids).

    Returns one row per pair, indexed by 候補ID `<smaller id>~<larger id>`, with the ids, which
    keys matched, whether the pair is mergeable and its survivor.
    """
    keys = customer_keys(customers)
    ids = keys.index.to_numpy(dtype=object)
    parts = []
    for code, kind in enumerate(KEYS):
        values = keys[kind]
        present = values.notna().to_numpy() & (values.astype(object).fillna("") != "").to_numpy()
        rows = np.flatnonzero(present)
        parts.append(pd.DataFrame({"kind": code, "value": values.to_numpy(dtype=object)[rows], "row": rows}))
    long = pd.concat(parts, ignore_index=True)
    long = long[long.duplicated(["kind", "value"], keep=False)]
    size = long.groupby(["kind", "value"], sort=False)["row"].transform("size")
    too_big = long[(size > max_group).to_numpy()]
    long = long[(size <= max_group).to_numpy()]
    big = [
        (KEYS[kind], str(value), sorted(ids[g["row"].to_numpy()], key=lambda i: keys.at[i, "id_rank"]))
        for (kind, value), g in too_big.groupby(["kind", "value"], sort=True)
    ]
    joined = long.merge(long, on=["kind", "value"], suffixes=("_a", "_b"))
    id_rank = keys["id_rank"].to_numpy()
    joined = joined[id_rank[joined["row_a"].to_numpy()] < id_rank[joined["row_b"].to_numpy()]]
    if joined.empty:
        return _no_pairs(), big
    n = len(ids)
    code = joined["row_a"].to_numpy(dtype=np.int64) * n + joined["row_b"].to_numpy(dtype=np.int64)
    flags = pd.crosstab(code, joined["kind"].to_numpy()).gt(0)
    flags = flags.reindex(columns=range(len(KEYS)), fill_value=False)
    flags.columns = list(KEYS)
    rows_a, rows_b = flags.index.to_numpy() // n, flags.index.to_numpy() % n
    pairs = pd.DataFrame({"customer_a": ids[rows_a], "customer_b": ids[rows_b]})
    for kind in KEYS:
        pairs[kind] = flags[kind].to_numpy()
    rule = keys["name_rule"].to_numpy(dtype=object)
    pairs["exact_name"] = (rule[rows_a] == rule[rows_b]) & (rule[rows_a] != "")
    members = pd.Index(pd.unique(np.concatenate([ids[rows_a], ids[rows_b]])))
    kana = reading(customers, members)
    ka, kb = kana.reindex(pairs["customer_a"]).to_numpy(), kana.reindex(pairs["customer_b"]).to_numpy()
    pairs["kana"] = (ka == kb) & (ka != "")
    display = keys["display"].to_numpy(dtype=object)
    pairs["name_a"], pairs["name_b"] = display[rows_a], display[rows_b]
    pairs["matched_on"] = matched_on(pairs)
    pairs["mergeable"] = np.where(pairs["exact_name"], YES, NO)
    survivor_rank = keys["survivor_rank"].to_numpy()
    pairs["survivor"] = np.where(survivor_rank[rows_a] < survivor_rank[rows_b], ids[rows_a], ids[rows_b])
    pairs.index = pd.Index(pairs["customer_a"] + "~" + pairs["customer_b"], name="candidate_id")
    return pairs.sort_index(), big


def matched_on(pairs: pd.DataFrame) -> pd.Series:
    """一致項目: every key that matched, in a fixed order (one pass per key, not per pair)."""
    flags = {
        "name": pairs["name"] & pairs["exact_name"],
        "name_variant": pairs["name"] & ~pairs["exact_name"],
        "kana": pairs["kana"],
        **{k: pairs[k] for k in ("phone", "email", "line")},
    }
    text = pd.Series("", index=pairs.index, dtype=object)
    for kind, flag in flags.items():
        text = text + np.where(flag.to_numpy(dtype=bool), LABELS[kind] + LIST_SEPARATOR, "")
    return text.str.removesuffix(LIST_SEPARATOR)


def _no_pairs() -> pd.DataFrame:
    columns = ["customer_a", "customer_b", *KEYS, "exact_name", "kana", "name_a", "name_b", "matched_on",
               "mergeable", "survivor"]
    return pd.DataFrame(columns=columns, index=pd.Index([], name="candidate_id", dtype=object), dtype=object)


# --------------------------------------------------------------------------- the rule


def duplicate_candidates(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """重複候補 rows (new, updated, withdrawn) and 顧客.重複候補, from the customers as they are."""
    customers = frames["customers"]
    table = frames["duplicates"]
    pairs, big = find_candidates(customers.data, mapping.duplicates.max_group)
    existing = table.data
    state = existing["state"]
    frozen = existing.index[state.isin(FROZEN).to_numpy()]
    unknown = existing.index[(state.notna() & ~state.isin(STATES)).to_numpy()]
    held = frozen.union(unknown)
    desired_state = pd.Series(np.where(pairs["mergeable"] == YES, PROPOSED, UNMERGEABLE), index=pairs.index)

    fresh = pairs.index.difference(existing.index)
    new = pairs.loc[fresh, list(PAIR_FIELDS)].assign(state=desired_state.reindex(fresh).to_numpy())
    appends = [
        new_row(table, cid, {**values, "approved": False, "processed_at": now}, REASON)
        for cid, values in zip(new.index, new.to_dict("records"), strict=True)
    ]
    live = pairs.index.intersection(existing.index).difference(held)
    edits = []
    for f in PAIR_FIELDS:
        edits += set_field(table, f, pairs.loc[live, f].astype(object), REASON)
    moved = live[(state.reindex(live) != desired_state.reindex(live)).to_numpy()]
    edits += set_field(table, "state", desired_state.reindex(moved).astype(object), REASON)
    edits += set_field(table, "processed_at", pd.Series(now, index=moved), REASON)
    # a row staff ticked 承認 stays, matching or not: their decision (the merge checks the names again),
    # and the row an interrupted merge finishes from once the source has left 顧客
    approved = existing.index[(existing["approved"].fillna(False).astype(bool) & table.usable("approved")).to_numpy()]
    withdrawn = existing.index.difference(pairs.index).difference(held).difference(approved)
    deletes = [Delete("duplicates", str(cid), "重複候補の取り下げ（一致しなくなった）") for cid in withdrawn]

    shown = pairs.loc[pairs.index.difference(frozen)]
    lists = duplicate_lists(shown, customers.data.index)
    lists = lists[lists.notna() | customers.data["duplicate_of"].notna()]  # blank stays blank: not worth comparing
    edits += set_field(customers, "duplicate_of", lists, REASON)
    problems = tuple(_too_many(customers, mapping, kind, value, members) for kind, value, members in big)
    problems += tuple(_state_problems(table, unknown))
    return Plan(edits=tuple(edits), appends=tuple(appends), deletes=tuple(deletes), problems=problems)


def duplicate_lists(pairs: pd.DataFrame, ids: pd.Index) -> pd.Series:
    """顧客.重複候補: for every customer, the other ids of its candidate pairs (blank when none)."""
    links = pd.DataFrame({
        "owner": np.concatenate([pairs["customer_a"].to_numpy(dtype=object), pairs["customer_b"].to_numpy(dtype=object)]),
        "other": np.concatenate([pairs["customer_b"].to_numpy(dtype=object), pairs["customer_a"].to_numpy(dtype=object)]),
    })
    rank = pd.Series(id_ranks(ids), index=ids)
    links = links.assign(rank=rank.reindex(links["other"]).to_numpy()).sort_values(["owner", "rank"], kind="stable")
    several = links["owner"].duplicated(keep=False).to_numpy()  # most customers have one other: no join for them
    shown = pd.concat([
        links.loc[~several, "other"].set_axis(links.loc[~several, "owner"]),
        links[several].groupby("owner", sort=False)["other"].agg(LIST_SEPARATOR.join),
    ])
    return shown.reindex(ids).astype(object).where(lambda v: v.notna(), None)


def _too_many(customers: Table, mapping: Mapping, kind: str, value: str, members: list[str]) -> Problem:
    field = KEY_FIELD[kind]
    first = members[0]
    shown = LIST_SEPARATOR.join(members[:5]) + ("…" if len(members) > 5 else "")
    header = customers.spec.column(field).header
    what = LABELS["name"] if kind == "name" else header
    return Problem(
        tab=customers.spec.title,
        cell=customers.a1(first, field),
        key=first,
        field=header,
        value=value,
        message=(f"{what}が同じ顧客が{len(members)}人います（{shown}）。"
                 f"{mapping.duplicates.max_group}人を超えるため重複候補には出しません。"
                 "共有の電話番号などで問題なければ、このままで構いません。"),
    )


def _state_problems(table: Table, ids: pd.Index) -> list[Problem]:
    header = table.spec.column("state").header
    message = BAD_STATE.format("・".join(STATES))
    return [Problem(table.spec.title, table.a1(cid, "state"), cid, header, str(table.data.at[cid, "state"]), message)
            for cid in ids]


def _text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str)


def _per_unique(values: pd.Series, fn) -> pd.Series:
    """fn over the distinct values only (names and readings repeat)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    mapped = np.array([fn(u) for u in uniques] + [""], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype=object)
