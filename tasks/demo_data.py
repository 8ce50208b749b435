"""Synthetic team workbooks (顧客 / 予約 / 担当者) typed the way real staff type them.

Why: the demo and the benchmarks need sheets that look like a Japanese sales team's, messiness
included (full-width digits, lost leading zeros, half-width kana, stray U+3000, dates in five
formats, duplicates, bad cells), without a single real person's data in them. Everything is
drawn from `random.Random` streams seeded by the caller, so the same arguments give the same rows.

Names come from gimei's own data file (kanji + readings that belong together); gimei's API is not
used because it draws from the global `random` and a new name on every attribute access.
E-mail domains are reserved example domains only (plus the team's `leporto.com` placeholder).
"""

from __future__ import annotations

import bisect
import functools
import gc
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")

CUSTOMERS_TAB, BOOKINGS_TAB, STAFF_TAB = "顧客", "予約", "担当者"
CUSTOMER_HEADERS = ["お客様番号", "姓", "名", "セイ", "メイ", "LINE名", "LINEユーザーID", "電話番号",
                    "メールアドレス", "流入経路", "セミナー参加日", "営業担当", "要注意メモ", "ブラックリストメモ",
                    "個別メモ", "初回登録日", "タグ"]
BOOKING_HEADERS = ["予約ID", "お客様番号", "営業担当", "メニュー", "開始日時", "ステータス", "アクション実行",
                   "Zoomリンク", "結果", "プラン", "お礼LINE", "キャンセル区分"]
STAFF_HEADERS = ["名前", "役割", "通知先", "有効"]

ACTIVE = ("仮予約中", "事前決済未払い", "予約中来店前", "事前決済支払い済み")
HELD = "来店済み"
CANCELLED = ("キャンセル", "事前決済店舗都合キャンセル", "キャンセル料未払い")
PLACEHOLDER_DOMAIN = "leporto.com"
EMAIL_DOMAINS = ("example.com", "example.jp", "example.co.jp", "example.ne.jp")

DATETIME_FORMAT = "yyyy/mm/dd hh:mm"
DATE_FORMAT = "yyyy/mm/dd"

CUSTOMERS_PER_SALESPERSON = 60  # keeps a diary humanly possible, so the only overlaps are the injected ones
SLOTS = 20  # starts 10:00, 10:30 … 19:30; a meeting takes three half-hour slots
DAYS_BEFORE, DAYS_AFTER = 59, 29  # bookings from 60 days before `now` to 30 days after
EXCEL_EPOCH = datetime(1899, 12, 30)

# Rates: the share of eligible rows that get each kind (at least one row per kind while rows remain).
NAME_NOISE = {"trailing_space": 0.02, "ideographic_space": 0.02, "merged_name": 0.01}
KANA_NOISE = {"hiragana": 0.04, "halfwidth": 0.03, "blank": 0.01}
PHONE_NOISE = {"fullwidth": 0.03, "number": 0.02, "plus81": 0.03, "bad": 0.01}
EMAIL_NOISE = {"upper": 0.03, "fullwidth": 0.02, "space": 0.01}
START_FORMATS = {"slash": 0.06, "dash": 0.03, "serial": 0.02, "kanji": 0.02, "fullwidth": 0.015, "nopad": 0.015}
BAD_STARTS = {"no_year": 0.002, "impossible": 0.002, "word": 0.002}
DATE_FORMATS = {"slash": 0.05, "dash": 0.03, "serial": 0.02, "kanji": 0.02, "fullwidth": 0.015}
BAD_DATES = {"no_year": 0.005, "impossible": 0.005, "word": 0.005}
DUPLICATE_RATE = 0.02  # second registrations of the same person
CAUTION_RATE, BLACKLIST_RATE, MEMO_RATE, INJECTION_RATE = 0.03, 0.01, 0.12, 0.01
OVERLAP_RATE, ORPHAN_RATE, DUPLICATE_ID_RATE = 0.002, 0.001, 0.001

VARIANT_KANJI = {"高": "髙", "崎": "﨑", "辺": "邉", "沢": "澤", "浜": "濱", "島": "嶋", "斎": "齋", "広": "廣",
                 "桜": "櫻", "国": "國", "徳": "德", "富": "冨", "恵": "惠", "関": "關"}
KANA_TYPOS = dict(zip("シツソンカガキギコゴサザタダトドハバヨユヤョュャウオジ",
                      "ツシンソガカギキゴコザサダタドトバハョュャヨユヤーウヂ", strict=True))
SOURCES = (("Instagram広告", 22), ("LINE広告", 18), ("セミナー", 20), ("YouTube", 8), ("紹介", 10),
           ("ホームページ", 8), ("Google検索", 6), (None, 8))
OTHER_TAGS = ("VIP", "【属性】経営者", "【属性】会社員", "要フォロー", "【流入】紹介", "資料請求済")
MANAGED_TAGS = ("【セミナー】個別相談予約完了", "【個別相談】実施済", "【結果】保留")
TAG_SEPARATORS = {"、": 0.30, "\n": 0.15, ", ": 0.10}  # of customers with two tags or more; the rest ","
MANAGED_TAG_RATE = 0.05  # staff typed a managed tag themselves (maybe a stale one)
CAUTION_MEMOS = ("言った言わないになりやすい。録音推奨", "前回強い口調のクレームあり", "返信が極端に遅い",
                 "日程変更が多い", "家族の反対あり、慎重に")
BLACKLIST_MEMOS = ("無断キャンセル3回", "決済トラブル（返金要求）", "担当者への暴言あり", "他社の同業者の可能性")
MEMOS = ("初回はZoom接続に苦戦", "夫婦で参加希望", "平日夜のみ可", "資料送付済み", "紹介者あり（既存顧客）",
         "お子様同席の可能性あり", "支払い方法を相談中", "電話よりLINE希望")
INJECTION_MEMOS = ('=HYPERLINK("https://example.com/minutes","前回の議事録")', "=1+1", "+81の番号から着信あり",
                   "-- 折り返し待ち --", "@佐藤さん 要フォロー")
LINE_NAME_ODD = ("@yuki", "-ゆき-", "=^_^=", "+mika+")
EMOJI = ("🌸", "✨", "🍀", "😊", "☀️", "🐶")
PLANS = (("スタンダード", 50), ("プレミアム", 30), ("ライト", 20))
BAD_DATE_WORDS = ("来週", "未定", "来週火曜", "調整中")
BAD_DAY_WORDS = ("先月", "不明", "去年の秋")
IMPOSSIBLE_DAYS = ("02/30", "02/31", "04/31", "06/31", "09/31", "11/31")

PAST_STATUSES = ((HELD, 72), ("キャンセル", 12), ("キャンセル料未払い", 6), ("事前決済店舗都合キャンセル", 3),
                 ("予約中来店前", 4), ("事前決済支払い済み", 3))
FUTURE_STATUSES = (("予約中来店前", 50), ("仮予約中", 18), ("事前決済未払い", 10), ("事前決済支払い済み", 12),
                   ("キャンセル", 8), ("事前決済店舗都合キャンセル", 2))
OUTCOMES = (("成約", 25), ("保留", 25), ("失注", 30), (None, 20))
CANCEL_KINDS = (("日程変更希望", 45), ("キャンセルのみ", 40), (None, 15))
BOOKINGS_PER_CUSTOMER = ((0, 5), (1, 13), (2, 20), (3, 22), (4, 18), (5, 12), (6, 10))  # 3.1; new customers get fewer
TICKS = ((True, 80), ("✓", 5), ("済", 5), ("○", 4), ("TRUE", 3), (1, 3))


class _Pick:
    """A weighted choice that costs one `random()` call, because rng.choices is slow at 300k rows."""

    def __init__(self, pairs: tuple[tuple[Any, float], ...]):
        self.items = [item for item, _ in pairs]
        self.cum: list[float] = []
        total = 0.0
        for _, weight in pairs:
            total += weight
            self.cum.append(total)
        self.total = total

    def __call__(self, rng: Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def _one(rng: Random, seq: Any) -> Any:
    """rng.choice at a third of the cost (one random() call): it runs a million times at 100k customers."""
    return seq[int(rng.random() * len(seq))]


PICK_SOURCE, PICK_PLAN = _Pick(SOURCES), _Pick(PLANS)
PICK_PAST, PICK_FUTURE, PICK_OUTCOME = _Pick(PAST_STATUSES), _Pick(FUTURE_STATUSES), _Pick(OUTCOMES)
PICK_CANCEL_KIND, PICK_COUNT, PICK_TICK = _Pick(CANCEL_KINDS), _Pick(BOOKINGS_PER_CUSTOMER), _Pick(TICKS)


# ---------------------------------------------------------------- text helpers

@functools.cache
def _name_pools() -> tuple[list, list, list]:
    """gimei's (kanji, hiragana, katakana) lists: read once, drawn from with our own seeded RNG."""
    import gimei
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with (Path(gimei.__file__).parent / "data" / "names.yml").open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=loader)
    first = data["first_name"]
    return ([tuple(n) for n in data["last_name"]], [tuple(n) for n in first["male"]],
            [tuple(n) for n in first["female"]])


@functools.cache
def _variant_surnames() -> list:
    return [n for n in _name_pools()[0] if any(ch in VARIANT_KANJI for ch in n[0])]


@functools.cache
def _halfwidth_table() -> dict[int, str]:
    """Full-width katakana → half-width, built from NFKC so no table is typed by hand."""
    table: dict[int, str] = {}
    for code in range(0xFF61, 0xFFA0):
        full = unicodedata.normalize("NFKC", chr(code))
        if len(full) == 1:
            table.setdefault(ord(full), chr(code))
    for code in range(0x30A1, 0x30FB):
        parts = unicodedata.normalize("NFD", chr(code))
        if len(parts) == 2 and ord(parts[0]) in table:
            table[code] = table[ord(parts[0])] + ("ﾞ" if parts[1] == "\u3099" else "ﾟ")
    return table


def _halfwidth(kata: str) -> str:
    return kata.translate(_halfwidth_table())


_FULLWIDTH = {code: code + 0xFEE0 for code in range(0x21, 0x7F)} | {0x20: 0x3000}


def _fullwidth(text: str) -> str:
    return text.translate(_FULLWIDTH)


_ROMAJI = dict(zip(
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン"
    "ガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポヴ",
    ("a", "i", "u", "e", "o", "ka", "ki", "ku", "ke", "ko", "sa", "shi", "su", "se", "so", "ta", "chi", "tsu",
     "te", "to", "na", "ni", "nu", "ne", "no", "ha", "hi", "fu", "he", "ho", "ma", "mi", "mu", "me", "mo", "ya",
     "yu", "yo", "ra", "ri", "ru", "re", "ro", "wa", "o", "n", "ga", "gi", "gu", "ge", "go", "za", "ji", "zu",
     "ze", "zo", "da", "ji", "zu", "de", "do", "ba", "bi", "bu", "be", "bo", "pa", "pi", "pu", "pe", "po", "vu"),
    strict=True))
_SMALL = {"ャ": "a", "ュ": "u", "ョ": "o", "ァ": "a", "ィ": "i", "ゥ": "u", "ェ": "e", "ォ": "o"}


def _romaji(kata: str) -> str:
    """Rough Hepburn for e-mail local parts and LINE names: readable, not a linguistic tool."""
    out: list[str] = []
    double = False
    for ch in kata:
        if ch == "ッ":
            double = True
            continue
        if ch in _SMALL and out:
            prev = out.pop()
            stem = prev[:-1]
            vowel = _SMALL[ch]
            plain = stem in ("sh", "ch", "j", "f", "v") or ch in "ァィゥェォ"
            out.append(stem + vowel if plain else stem + "y" + vowel)
            continue
        syllable = _ROMAJI.get(ch)
        if syllable is None:
            continue
        if double:
            syllable = syllable[0] + syllable
            double = False
        out.append(syllable)
    return "".join(out)


# ---------------------------------------------------------------- model

@dataclass(slots=True)
class _Customer:
    cid: str
    family: tuple
    given: tuple
    registered: date
    salesperson: str | None
    mode: str = "line"  # line (a LINE friend), phone (booked by phone), form (web form)
    line_id: str | None = None
    line_name: str | None = None
    phone: str | None = None  # national digits
    phone_style: str = "hyphen"
    email: str | None = None
    source: str | None = None
    seminar: date | None = None
    caution: str | None = None
    blacklist: str | None = None
    holds_booking: bool = False  # blacklisted yet holding an active booking (alert 4)
    memo: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Booking:
    cid: str
    salesperson: str
    menu: str
    start: datetime
    status: str
    created: datetime
    action: str | None = "実行する"
    zoom: str | None = None
    outcome: str | None = None
    plan: str | None = None
    thanks: Any = None
    cancel_kind: str | None = None
    readable: bool = False  # an injected overlap: its start must stay parseable, or the overlap is hidden


class _Diary:
    """Each salesperson's busy half-hours per day, so generated meetings do not collide by chance."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, int], int] = {}

    def book(self, rng: Random, person: str, day: int) -> int | None:
        used = self.used.get((person, day), 0)
        for _ in range(6):
            slot = int(rng.random() * SLOTS)
            if not used & (7 << slot):
                break
        else:
            free = [s for s in range(SLOTS) if not used & (7 << s)]
            if not free:
                return None
            slot = rng.choice(free)
        self.used[(person, day)] = used | (7 << slot)
        return slot


def _local(now: datetime) -> datetime:
    """The run's clock as a naive Tokyo time, which is what a sheet cell holds."""
    local = now.astimezone(TOKYO) if now.tzinfo else now
    return datetime(*local.timetuple()[:6])  # also turns a pandas Timestamp into a plain datetime


def _assign(rng: Random, eligible: list[int], rates: dict[str, float]) -> dict[int, str]:
    """Distinct rows for each kind of noise; at least one per kind, so small sheets show every kind."""
    wanted = [(kind, max(1, round(rate * len(eligible)))) for kind, rate in rates.items()]
    chosen = rng.sample(eligible, min(len(eligible), sum(k for _, k in wanted)))
    out: dict[int, str] = {}
    pos = 0
    for kind, k in wanted:
        for index in chosen[pos:pos + k]:
            out[index] = kind
        pos += k
    return out


# ---------------------------------------------------------------- generation

def generate_frames(customers: int = 300, *, seed: int = 7, now: datetime) -> dict[str, list[list]]:
    """Rows (header row first) for the tabs 顧客, 予約, 担当者 exactly as staff would have typed them.

    Pure and reproducible: same args, same rows. `now` is the run's clock (naive = Tokyo time);
    bookings spread from 60 days before it to 30 days after. Values are str, int, float, bool,
    date or naive datetime, as a sheet's cells would hold.
    """
    if customers < 0:
        raise ValueError("customers must be >= 0")
    now = _local(now)
    with _no_gc():
        staff_rows, sales, zoom_rooms = _staff(Random(f"{seed}/staff"), customers)
        people = _customers(Random(f"{seed}/customers"), customers, sales, now)
        bookings = _bookings(Random(f"{seed}/bookings"), people, sales, zoom_rooms, now)
        noise = Random(f"{seed}/noise")
        return {
            CUSTOMERS_TAB: [CUSTOMER_HEADERS, *_customer_rows(noise, people)],
            BOOKINGS_TAB: [BOOKING_HEADERS, *_booking_rows(noise, bookings)],
            STAFF_TAB: [STAFF_HEADERS, *staff_rows],
        }


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC: millions of acyclic objects make its passes cost ~40% of a 100k run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _full_names(rng: Random, count: int) -> list[str]:
    last, male, female = _name_pools()
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = f"{rng.choice(last)[0]} {rng.choice(rng.choice((male, female)))[0]}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _staff(rng: Random, customers: int) -> tuple[list[list], list[str], dict[str, str]]:
    n_sales = max(5, -(-customers // CUSTOMERS_PER_SALESPERSON))
    names = _full_names(rng, n_sales + 2)
    sales = names[:n_sales]
    rows = [[name, "営業", f"sales{i}", True] for i, name in enumerate(sales, 1)]
    rows.append([names[-2], "決済リンク作成", "paylink", True])
    rows.append([names[-1], "運営", "ops", True])
    rooms = {name: f"https://zoom.us/j/{rng.randrange(10**9, 10**10)}" for name in sales}
    return rows, sales, rooms


def _phone(rng: Random) -> str:
    if rng.random() < 0.05:
        return _one(rng, ("03", "06")) + f"{int(rng.random() * 10**8):08d}"
    return _one(rng, ("090", "080", "070")) + f"{int(rng.random() * 10**8):08d}"


def _email(rng: Random, person: _Customer) -> str:
    given, family = _romaji(person.given[2]) or "user", _romaji(person.family[2]) or "mail"
    number = rng.randrange(1, 100)
    local = rng.choice((f"{given}.{family}", f"{given}{family[0]}{number}", f"{family}_{given}",
                        f"{given}{number:02d}", f"{given[:3]}{family}{number}"))
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def _line_name(rng: Random, person: _Customer) -> str:
    roll = rng.random()
    if roll < 0.30:
        return person.given[1]
    if roll < 0.40:
        return person.given[0]
    if roll < 0.55:
        return f"{person.family[0]} {person.given[0]}"
    if roll < 0.60:
        return person.family[2] + person.given[2]
    if roll < 0.75:
        return _romaji(person.given[2]).capitalize() or person.given[1]
    if roll < 0.92:
        return person.given[1] + rng.choice(EMOJI)
    return f"{_romaji(person.given[2])[:1].upper()}.{_romaji(person.family[2])[:1].upper()}"


def _set_mode(rng: Random, person: _Customer, mode: str) -> None:
    """Contact fields that fit how the person reached the team."""
    person.mode = mode
    person.line_id = person.line_name = person.email = None
    if mode == "phone":
        person.phone = person.phone or _phone(rng)
        person.email = f"{person.phone}@{PLACEHOLDER_DOMAIN}"
        return
    if mode == "line":
        person.line_id = f"U{rng.getrandbits(128):032x}"
        person.line_name = _line_name(rng, person) if rng.random() < 0.97 else None
        if rng.random() < 0.45:
            person.email = _email(rng, person)
        if person.phone is None and rng.random() < 0.45:
            person.phone = _phone(rng)
        return
    person.email = _email(rng, person)
    if person.phone is None and rng.random() < 0.9:
        person.phone = _phone(rng)


def _customers(rng: Random, n: int, sales: list[str], now: datetime) -> list[_Customer]:
    last, male, female = _name_pools()
    first_day = now.date() - timedelta(days=420)
    people: list[_Customer] = []
    for i in range(n):
        given = _one(rng, female if rng.random() < 0.55 else male)
        registered = first_day + timedelta(days=int(419 * i / max(n, 1)) + (rng.random() < 0.5))
        person = _Customer(cid=f"C{i + 1:06d}", family=_one(rng, last), given=given, registered=registered,
                           salesperson=_one(rng, sales) if rng.random() < 0.97 else None)
        roll = rng.random()
        _set_mode(rng, person, "line" if roll < 0.80 else "phone" if roll < 0.88 else "form")
        person.phone_style = "hyphen" if (r := rng.random()) < 0.78 else "digits" if r < 0.94 else "paren"
        person.source = PICK_SOURCE(rng)
        if person.source == "セミナー" or rng.random() < 0.15:
            person.seminar = registered - timedelta(days=rng.randrange(0, 30))
        person.tags = _tags(rng, person)
        people.append(person)
    _duplicates(rng, people)
    indices = list(range(n))
    managed = _assign(rng, [i for i, p in enumerate(people) if p.tags], {"managed": MANAGED_TAG_RATE * 2})
    for k, index in enumerate(managed):
        people[index].tags.append(MANAGED_TAGS[k % len(MANAGED_TAGS)])
    for index, _ in _assign(rng, indices, {"caution": CAUTION_RATE}).items():
        people[index].caution = rng.choice(CAUTION_MEMOS)
    blacklisted = sorted(_assign(rng, indices, {"blacklist": BLACKLIST_RATE}))
    for n_black, index in enumerate(blacklisted):
        people[index].blacklist = rng.choice(BLACKLIST_MEMOS)
        people[index].holds_booking = n_black % 2 == 0
    memos = _assign(rng, indices, {"injection_eq": INJECTION_RATE / 2, "injection": INJECTION_RATE / 2,
                                   "memo": MEMO_RATE})
    for index, kind in memos.items():
        people[index].memo = (INJECTION_MEMOS[rng.randrange(2)] if kind == "injection_eq"
                              else rng.choice(INJECTION_MEMOS[2:]) if kind == "injection" else rng.choice(MEMOS))
    return people


def _tags(rng: Random, person: _Customer) -> list[str]:
    tags: list[str] = []
    if person.source and "広告" in person.source and rng.random() < 0.6:
        tags.append("【流入】広告")
    if person.source == "セミナー" and rng.random() < 0.6:
        tags.append("【流入】セミナー")
    if rng.random() < 0.15:
        tags.append(rng.choice(OTHER_TAGS))
    return tags


def _duplicates(rng: Random, people: list[_Customer]) -> None:
    """The same person registered twice: once by phone (placeholder e-mail), once as a LINE friend."""
    n = len(people)
    if n < 2:
        return
    seconds = sorted(rng.sample(range(1, n), max(1, min(n // 2, round(DUPLICATE_RATE * n)))))
    taken = set(seconds)
    for k, j in enumerate(seconds):
        i = rng.randrange(j)
        for _ in range(20):
            if i not in taken:
                break
            i = rng.randrange(j)
        else:
            continue
        taken.add(i)
        first, second = people[i], people[j]
        kind = ("variant", "exact", "kana_typo")[k % 3]
        if kind == "variant" and not any(ch in VARIANT_KANJI for ch in first.family[0] + first.given[0]):
            first.family = rng.choice(_variant_surnames())
        second.family, second.given = first.family, first.given
        if kind == "variant":
            spots = [(part, pos) for part, name in ((0, first.family[0]), (1, first.given[0]))
                     for pos, ch in enumerate(name) if ch in VARIANT_KANJI]
            part, pos = rng.choice(spots)
            source = (first.family, first.given)[part]
            kanji = source[0][:pos] + VARIANT_KANJI[source[0][pos]] + source[0][pos + 1:]
            if part == 0:
                second.family = (kanji, *source[1:])
            else:
                second.given = (kanji, *source[1:])
        elif kind == "kana_typo":
            spots = [(part, pos) for part, name in ((0, first.family[2]), (1, first.given[2]))
                     for pos, ch in enumerate(name) if ch in KANA_TYPOS]
            if spots:
                part, pos = rng.choice(spots)
                source = (first.family, first.given)[part]
                kata = source[2][:pos] + KANA_TYPOS[source[2][pos]] + source[2][pos + 1:]
                changed = (source[0], source[1], kata)
                if part == 0:
                    second.family = changed
                else:
                    second.given = changed
        by_phone, by_line = (first, second) if rng.random() < 0.5 else (second, first)
        shared_phone = by_phone.phone or by_line.phone or _phone(rng)
        by_phone.phone = shared_phone
        _set_mode(rng, by_phone, "phone")
        _set_mode(rng, by_line, "line")
        by_line.phone = shared_phone if kind == "variant" or rng.random() < 0.5 else None
        if rng.random() < 0.7:
            second.salesperson = first.salesperson


def _bookings(rng: Random, people: list[_Customer], sales: list[str], rooms: dict[str, str],
              now: datetime) -> list[_Booking]:
    today = datetime.combine(now.date(), datetime.min.time())
    workdays = [d for d in range(-DAYS_BEFORE, DAYS_AFTER + 1) if (today + timedelta(days=d)).weekday() != 6]
    diary = _Diary()
    out: list[_Booking] = []

    def when(person: str, day: int, other_days: list[int]) -> datetime | None:
        """A free start on that day, else on another of the allowed days (a full day moves the booking)."""
        for attempt in range(6):
            slot = diary.book(rng, person, day)
            if slot is not None:
                return today + timedelta(days=day, hours=10, minutes=30 * slot)
            if attempt == 0 and not other_days:
                return None
            day = _one(rng, other_days)
        return None

    def fill(b: _Booking) -> _Booking:
        """Staff-typed columns that follow from the status."""
        b.action = "実行する" if (r := rng.random()) < 0.9 else "実行しない" if r < 0.97 else None
        roll = rng.random()
        if b.status == "仮予約中" and roll < 0.5:
            b.zoom = None
        elif roll < 0.7:
            b.zoom = rooms[b.salesperson]
        elif roll < 0.95:
            pwd = f"?pwd={rng.getrandbits(64):016x}" if rng.random() < 0.2 else ""
            b.zoom = f"https://zoom.us/j/{10**10 + int(rng.random() * 9 * 10**10)}{pwd}"
        if b.status == HELD:
            b.outcome = PICK_OUTCOME(rng)
            if b.outcome in ("成約", "保留") or rng.random() < 0.1:
                b.plan = PICK_PLAN(rng)
            ticked = rng.random() < (0.8 if b.outcome in ("成約", "保留") else 0.5)
            b.thanks = PICK_TICK(rng) if ticked else (False if rng.random() < 0.85 else None)
        elif b.status.startswith("事前決済"):
            b.plan = PICK_PLAN(rng)
        if b.status in CANCELLED and b.cancel_kind is None:
            b.cancel_kind = PICK_CANCEL_KIND(rng)
        return b

    def created(start: datetime) -> datetime:
        made = start - timedelta(minutes=1440 + int(rng.random() * 30240))
        return made if made < now else now - timedelta(minutes=1 + int(rng.random() * 600))

    for person in people:
        lo = bisect.bisect_left(workdays, (person.registered - now.date()).days + 1)
        days = workdays[lo:]
        count = min(PICK_COUNT(rng), len(days))
        chosen = sorted(rng.sample(days, count))
        held_with: str | None = None
        mine: list[_Booking] = []
        for n_day, day in enumerate(chosen):
            second = held_with is not None and rng.random() < 0.5
            if second:
                menu, who = "2回目面談", held_with if rng.random() < 0.85 else _one(rng, sales)
            else:
                menu = "個別相談"
                who = person.salesperson if person.salesperson and rng.random() < 0.9 else _one(rng, sales)
            start = when(who, day, days)
            if start is None:
                continue
            last = n_day == len(chosen) - 1
            if start < now:
                status = PICK_PAST(rng)
            elif not last:
                status = "キャンセル"  # rebooked later: only the last future booking stays
            else:
                status = PICK_FUTURE(rng)
            rebooked = status == "キャンセル" and not last and start >= now
            booking = _Booking(person.cid, who, menu, start, status, created(start),
                               cancel_kind="日程変更希望" if rebooked else None)
            mine.append(fill(booking))
            if status == HELD and menu == "個別相談":
                held_with = who
        if person.holds_booking and not any(b.status in ACTIVE and b.start >= now for b in mine):
            future = [d for d in days if d > 0]
            start = when(person.salesperson or sales[0], rng.choice(future), future) if future else None
            if start is not None:
                mine.append(fill(_Booking(person.cid, person.salesperson or sales[0], "個別相談", start,
                                          "予約中来店前", created(start))))
        out.extend(mine)
    out.extend(_injected(rng, out, people, sales, workdays, when, fill, created, now))
    out.sort(key=lambda b: b.created)
    return out


def _injected(rng: Random, bookings: list[_Booking], people: list[_Customer], sales: list[str],
              workdays: list[int], when, fill, created, now: datetime) -> list[_Booking]:
    """Overlapping active meetings of one salesperson, and bookings of customers who do not exist."""
    extra: list[_Booking] = []
    active = [b for b in bookings if b.status in ACTIVE and b.start >= now]
    clean = [p for p in people if not p.blacklist]
    if active and clean:
        for other in rng.sample(active, min(len(active), max(1, round(OVERLAP_RATE * len(bookings))))):
            shift = timedelta(minutes=rng.choice((0, 30, 60)))
            start = other.start - shift if other.start.hour >= 19 else other.start + shift
            customer = rng.choice(clean)
            if customer.cid == other.cid:
                customer = rng.choice(clean)
            other.readable = True
            extra.append(fill(_Booking(customer.cid, other.salesperson, "個別相談", start,
                                       rng.choice(("予約中来店前", "仮予約中")), created(start), readable=True)))
    future = [d for d in workdays if d > 0]
    for _ in range(max(1, round(ORPHAN_RATE * len(bookings))) if future and bookings else 0):
        who = rng.choice(sales)
        start = when(who, rng.choice(future), future)
        if start is not None:
            missing = f"C{len(people) + rng.randrange(1, 100):06d}"
            extra.append(fill(_Booking(missing, who, "個別相談", start, "予約中来店前", created(start))))
    return extra


# ---------------------------------------------------------------- rendering (the staff's typing)

def _serial(value: datetime | date) -> float | int:
    if isinstance(value, datetime):
        delta = value - EXCEL_EPOCH
        return round(delta.days + delta.seconds / 86400, 10)
    return (value - EXCEL_EPOCH.date()).days


def _render_time(value: datetime | date, kind: str | None, rng: Random) -> Any:
    """A date or date-time cell in one of the ways staff type it (None: a real date cell)."""
    if kind is None:
        return value
    has_time = isinstance(value, datetime)
    hm = f" {value.hour:02d}:{value.minute:02d}" if has_time else ""
    if kind == "slash":
        return f"{value:%Y/%m/%d}{hm}"
    if kind == "dash":
        return f"{value:%Y-%m-%d}{hm}"
    if kind == "serial":
        return _serial(value)
    if kind == "kanji":
        return f"{value.year}年{value.month}月{value.day}日{hm}"
    if kind == "fullwidth":
        return _fullwidth(f"{value:%Y/%m/%d}{hm}")
    if kind == "nopad":
        return f"{value.year}/{value.month}/{value.day}" + (f" {value.hour}:{value:%M}" if has_time else "")
    if kind == "no_year":
        return f"{value.month}/{value.day}{hm}"
    if kind == "impossible":
        return f"{value.year}/{rng.choice(IMPOSSIBLE_DAYS)}{hm}"
    return rng.choice(BAD_DATE_WORDS if has_time else BAD_DAY_WORDS)


def _render_phone(digits: str, style: str, kind: str | None, rng: Random) -> Any:
    split = (2, 4) if digits[1] in "36" else (3, 4)
    a, b, c = digits[:split[0]], digits[split[0]:split[0] + split[1]], digits[split[0] + split[1]:]
    if kind == "number":
        return int(digits)  # a number cell: the leading 0 is gone
    if kind == "bad":
        return rng.choice((f"{a}-{b}-{c[:-1]}", f"{b}-{c}", f"{a}-{b}{c}-{rng.randrange(10)}", "不明"))
    if kind == "plus81":
        return f"+81 {a[1:]}-{b}-{c}"
    text = {"hyphen": f"{a}-{b}-{c}", "digits": digits, "paren": f"{a}({b}){c}"}[style]
    return _fullwidth(text) if kind == "fullwidth" else text


def _render_email(email: str, kind: str | None, rng: Random) -> str:
    if kind == "upper":
        return email.upper() if rng.random() < 0.5 else email[0].upper() + email[1:].replace("example", "Example")
    if kind == "fullwidth":
        return _fullwidth(email)
    if kind == "space":
        return email + rng.choice((" ", "\u3000"))
    return email


def _customer_rows(rng: Random, people: list[_Customer]) -> list[list]:
    everyone = list(range(len(people)))
    names = _assign(rng, everyone, NAME_NOISE)
    kana = _assign(rng, everyone, KANA_NOISE)
    phones = _assign(rng, [i for i, p in enumerate(people) if p.phone], PHONE_NOISE)
    emails = _assign(rng, [i for i, p in enumerate(people) if p.email and p.mode != "phone"], EMAIL_NOISE)
    registered = _assign(rng, everyone, DATE_FORMATS)
    with_seminar = [i for i, p in enumerate(people) if p.seminar]
    seminar = _assign(rng, with_seminar, DATE_FORMATS | BAD_DATES)
    separators = _assign(rng, [i for i, p in enumerate(people) if len(p.tags) > 1], TAG_SEPARATORS)
    odd_line_names = _assign(rng, [i for i, p in enumerate(people) if p.line_name], {"odd": 0.01})
    rows: list[list] = []
    for i, p in enumerate(people):
        family, given = p.family[0], p.given[0]
        name_kind = names.get(i)
        if name_kind == "trailing_space":
            family += " "
        elif name_kind == "ideographic_space":
            given = "\u3000" + given if rng.random() < 0.5 else given + "\u3000"
        elif name_kind == "merged_name":
            family, given = f"{family}\u3000{given}", None
        kana_kind = kana.get(i)
        sei, mei = p.family[2], p.given[2]
        if kana_kind == "hiragana":
            sei, mei = p.family[1], p.given[1]
        elif kana_kind == "halfwidth":
            sei, mei = _halfwidth(sei), _halfwidth(mei)
        elif kana_kind == "blank":
            sei = mei = None
        line_name = rng.choice(LINE_NAME_ODD) if i in odd_line_names else p.line_name
        phone = _render_phone(p.phone, p.phone_style, phones.get(i), rng) if p.phone else None
        email = _render_email(p.email, emails.get(i), rng) if p.email else None
        seminar_cell = _render_time(p.seminar, seminar.get(i), rng) if p.seminar else None
        tags = separators.get(i, ",").join(p.tags) if p.tags else None
        rows.append([p.cid, family, given, sei, mei, line_name, p.line_id, phone, email, p.source, seminar_cell,
                     p.salesperson, p.caution, p.blacklist, p.memo,
                     _render_time(p.registered, registered.get(i), rng), tags])
    return rows


def _booking_rows(rng: Random, bookings: list[_Booking]) -> list[list]:
    ids = [f"R{i + 1:06d}" for i in range(len(bookings))]
    if len(ids) > 1:  # a row copied from the one above, its 予約ID left unchanged
        for j in rng.sample(range(1, len(ids)), min(len(ids) - 1, max(1, round(DUPLICATE_ID_RATE * len(ids))))):
            ids[j] = ids[j - 1]
    bad = _assign(rng, [i for i, b in enumerate(bookings) if not b.readable], BAD_STARTS)
    starts = _assign(rng, [i for i in range(len(bookings)) if i not in bad], START_FORMATS) | bad
    return [[ids[i], b.cid, b.salesperson, b.menu, _render_time(b.start, starts.get(i), rng), b.status, b.action,
             b.zoom, b.outcome, b.plan, b.thanks, b.cancel_kind] for i, b in enumerate(bookings)]


# ---------------------------------------------------------------- writing

_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NEEDS_ESCAPE = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_FORMULA_LIKE = ("=", "+", "-", "@")


def _column_letters(n: int) -> str:
    letters = ""
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _cell_value(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(TOKYO).replace(tzinfo=None)
    return value


def write_workbook(path: str | Path, tabs: dict[str, list[list]], *, engine: str = "fast") -> Path:
    """Write the tabs to an .xlsx: text is always text (never a formula), times are real date-times.

    engine "fast" streams the sheet XML itself (100k customers in seconds); "openpyxl" uses
    openpyxl's write-only mode, which is correct too but takes ~20 µs a cell (100 s for 100k
    customers on a 2-core machine, with or without lxml). Both reopen identically with openpyxl.
    """
    path = Path(path)
    if engine not in ("fast", "openpyxl"):
        raise ValueError(f"unknown engine: {engine}")
    with _no_gc():  # the tabs' millions of cells would be walked by every full GC pass
        (_write_fast if engine == "fast" else _write_openpyxl)(path, tabs)
    return path


def _write_openpyxl(path: Path, tabs: dict[str, list[list]]) -> None:
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    wb = openpyxl.Workbook(write_only=True)
    for title, rows in tabs.items():
        ws = wb.create_sheet(title)
        for row in rows:
            cells = []
            for value in map(_cell_value, row):
                if isinstance(value, str) and value.startswith(_FORMULA_LIKE):
                    cell = WriteOnlyCell(ws, value=value)
                    cell.data_type = "s"
                    value = cell
                elif isinstance(value, (datetime, date)):
                    cell = WriteOnlyCell(ws, value=value)
                    cell.number_format = DATETIME_FORMAT if isinstance(value, datetime) else DATE_FORMAT
                    value = cell
                cells.append(value)
            ws.append(cells)
    wb.save(path)


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "{sheets}</Types>")
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>')
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    f'<numFmts count="2"><numFmt numFmtId="164" formatCode="{DATETIME_FORMAT}"/>'
    f'<numFmt numFmtId="165" formatCode="{DATE_FORMAT}"/></numFmts>'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>")
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<dimension ref="{ref}"/><sheetData>')


def _write_fast(path: Path, tabs: dict[str, list[list]]) -> None:
    titles = list(tabs)
    for title in titles:
        if not title or len(title) > 31 or any(ch in title for ch in "[]:*?/\\"):
            raise ValueError(f"invalid sheet title: {title!r}")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, len(titles) + 1))
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES.format(sheets=overrides))
        zf.writestr("_rels/.rels", _ROOT_RELS)
        zf.writestr("xl/workbook.xml", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
            + "".join(f'<sheet name="{escape(t, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>'
                      for i, t in enumerate(titles, 1))
            + "</sheets></workbook>"))
        zf.writestr("xl/_rels/workbook.xml.rels", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + "".join(f'<Relationship Id="rId{i}" '
                      'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
                      f'Target="worksheets/sheet{i}.xml"/>' for i in range(1, len(titles) + 1))
            + f'<Relationship Id="rId{len(titles) + 1}" '
            'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
            'Target="styles.xml"/></Relationships>'))
        zf.writestr("xl/styles.xml", _STYLES)
        for i, title in enumerate(titles, 1):
            with zf.open(f"xl/worksheets/sheet{i}.xml", "w") as raw:
                _write_sheet(raw, tabs[title])


def _write_sheet(raw, rows: list[list]) -> None:
    width = max((len(r) for r in rows), default=0)
    letters = [_column_letters(c) for c in range(1, width + 1)]
    ref = f"A1:{letters[-1]}{len(rows)}" if width and rows else "A1"
    chunk: list[str] = [_SHEET_HEAD.format(ref=ref)]
    for r, row in enumerate(rows, 1):
        cells = [f'<row r="{r}">']
        for letter, value in zip(letters, row, strict=False):
            if type(value) is str:  # the common case, inlined: this loop runs 5M times at 100k customers
                if not value:
                    continue
                if _NEEDS_ESCAPE.search(value):
                    value = escape(_ILLEGAL_XML.sub("", value))
                cells.append(f'<c r="{letter}{r}" t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>')
            elif value is not None:
                cells.append(_xml_cell(f"{letter}{r}", value))
        cells.append("</row>")
        chunk.append("".join(cells))
        if len(chunk) >= 2000:
            raw.write("".join(chunk).encode())
            chunk.clear()
    chunk.append("</sheetData></worksheet>")
    raw.write("".join(chunk).encode())


def _xml_cell(ref: str, value: Any) -> str:
    if isinstance(value, str):
        if not value:
            return ""
        value = escape(_ILLEGAL_XML.sub("", value))
        return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>'
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, datetime):
        return f'<c r="{ref}" s="1"><v>{_serial(_cell_value(value))}</v></c>'
    if isinstance(value, date):
        return f'<c r="{ref}" s="2"><v>{_serial(value)}</v></c>'
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{ref}: {value!r} cannot be stored in a sheet")
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    return _xml_cell(ref, str(value))


def make_team_workbook(path: str | Path, customers: int = 300, *, seed: int = 7, now: datetime,
                       engine: str = "fast") -> Path:
    """generate_frames + write_workbook: a demo or benchmark workbook in one call."""
    return write_workbook(path, generate_frames(customers, seed=seed, now=now), engine=engine)

