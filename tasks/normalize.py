"""Cell normalizers: what staff typed -> a typed value, or a problem text staff can act on.

Pure and never raising for any cell value: a cell that cannot be read becomes a problem (in
Japanese, for the エラー tab), never a crash and never a guess. Cells come from openpyxl (str, int,
float, bool, datetime, date, time, None) or from the Sheets API read UNFORMATTED (a date is a float
serial, days since 1899-12-30). Every time is Asia/Tokyo.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import traceback
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jaconv
import numpy as np
import pandas as pd
import phonenumbers

TZ = ZoneInfo("Asia/Tokyo")
KINDS = (
    "text", "name", "kana", "phone", "email", "datetime", "date", "check", "int", "url",
    "line_user_id", "enum", "tags",
)
DEFAULT_TRUTHS = ("TRUE", "true", "✓", "○", "済", "1")
FALSES = ("FALSE", "false", "0", "×", "未")

# Staff-facing problem texts (Japanese: they go to the エラー tab as they are).
KANA_NOT_KANA = "フリガナにカナ以外の文字があります"
PHONE_BAD = "電話番号として読めません"
EMAIL_BAD = "メールアドレスとして読めません"
DATETIME_BAD = "日時として読めません"
DATE_BAD = "日付として読めません"
NO_TIME = "時刻がありません"
NO_YEAR = "年がありません（あいまいな日時）"
NO_SUCH_DATE = "存在しない日付・時刻です"
OUT_OF_RANGE = "日時が範囲外です（1990〜2100年）"
CHECK_BAD = "チェック欄の値を読めません"
INT_BAD = "数値として読めません"
URL_BAD = "https のURLではありません"
LINE_ID_BAD = "LINEユーザーIDの形式ではありません"
ENUM_BAD = "次のどれかを入力してください: {}"
UNREADABLE = "値を読めません"

log = logging.getLogger(__name__)

Result = tuple[object, "str | None"]

# --------------------------------------------------------------------------- text basics

_INVISIBLE = "\u200b\ufeff"  # zero-width characters, pasted from web pages
_ZERO_WIDTH = dict.fromkeys(map(ord, _INVISIBLE))
HYPHENS = "\u2010\u2011\u2012\u2013\u2014\u2015\u30fc\uff70\u2212\uff0d\ufe63"
_DASH = str.maketrans(dict.fromkeys(HYPHENS, "-"))


_HAS_INVISIBLE = re.compile(f"[{_INVISIBLE}]").search


def _visible(text: str) -> str:
    """The text without its invisible characters (a look for them first: translate is slow)."""
    return text.translate(_ZERO_WIDTH) if _HAS_INVISIBLE(text) else text


def _nfkc(text: str) -> str:
    """NFKC without invisible characters: what staff see is what we compare."""
    if text.isascii():  # already NFKC: the common case, kept cheap for big columns
        return text
    text = _visible(text)
    # the check is ~50x cheaper than normalizing text that already is NFKC (most of what staff type)
    if unicodedata.is_normalized("NFKC", text):
        return text
    # What the pipeline writes (（キャンセル）, message bodies) is NFKC but for full-width ASCII and
    # U+3000: those replaced by their one-character NFKD (NFKC of the text stays the same, as NFKD
    # decomposes character by character), the check passes, ~8x cheaper than normalizing.
    text = _FULL_WIDTH(_half_width, text)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


_FULL_WIDTH = re.compile("[\u3000\uff01-\uff5e]").sub
_HALF_WIDTH = {chr(c): unicodedata.normalize("NFKD", chr(c)) for c in (0x3000, *range(0xFF01, 0xFF5F))}


def _half_width(match: re.Match[str]) -> str:
    return _HALF_WIDTH[match.group()]


def _dashed(text: str) -> str:
    """Every hyphen variant (ー and ｰ too: IMEs type them in numbers) as ASCII '-'."""
    return text if text.isascii() else text.translate(_DASH)


def _clean(value: object) -> str:
    """Any cell as NFKC text, stripped: the common first step of the text kinds."""
    text = value if isinstance(value, str) else to_text(value)
    return _nfkc(text).strip()


def _collapse(text: str) -> str:
    """Inner runs of whitespace (U+3000 included) become one ASCII space."""
    return " ".join(text.split())


def _plain(value: object) -> object:
    """NumPy scalars as Python ones, so that one set of type checks covers every adapter."""
    if isinstance(value, np.generic):
        if isinstance(value, np.datetime64):
            return pd.Timestamp(value)
        return value.item()
    return value


_NEVER_MISSING = (str, int, dt.datetime)  # a tuple: isinstance with a `X | Y` union is ~10x slower in 3.11


def is_missing(value: object) -> bool:
    """None, NaN, NaT and pd.NA: what pandas leaves in an empty cell (and any scalar pd.isna calls missing)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, _NEVER_MISSING):  # the common cells, without pd.isna's cost (NaT is caught above)
        return False
    if isinstance(value, float):
        return bool(value != value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar
        return False


def _is_blank(value: object) -> bool:
    """Missing, or text that is only whitespace (checked to equal `_clean(value) == ""`, but cheaper)."""
    return is_missing(value) or (isinstance(value, str) and not _visible(value).strip())


# --------------------------------------------------------------------------- display text


def to_text(value: object) -> str:
    """The canonical display text of a cell, so that 12, 12.0 and "12" compare equal as staff see them."""
    value = _plain(value)
    if is_missing(value):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return _int_text(value)
    if isinstance(value, float):
        return _float_text(value)
    return _temporal_text(value)


def cell_text(value: object) -> str:
    """A header or key cell as check and every writer match it: its text, NFKC, trimmed."""
    return unicodedata.normalize("NFKC", to_text(value)).strip()


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # beyond Python's int-to-str digit limit
        return f"{value:x}"


def _float_text(value: float) -> str:
    """Integral floats print as integers (Sheets sends 12 as 12.0); others in shortest repr."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _temporal_text(value: object) -> str:
    if isinstance(value, dt.datetime):
        return _datetime_text(_in_tokyo(value))
    if isinstance(value, dt.date):
        return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"
    if isinstance(value, dt.time):
        return _clock_text(value)
    return str(value)


def _in_tokyo(value: dt.datetime) -> dt.datetime:
    """Aware date-times shown in JST; naive ones already are JST by convention."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value
    try:
        return value.astimezone(TZ)
    except (OverflowError, ValueError):
        return value


def _datetime_text(value: dt.datetime) -> str:
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d} {_clock_text(value)}"


def _clock_text(value: dt.datetime | dt.time) -> str:
    text = f"{value.hour:02d}:{value.minute:02d}"
    return f"{text}:{value.second:02d}" if value.second else text


# --------------------------------------------------------------------------- matching keys

_VARIANTS = str.maketrans({
    "髙": "高", "﨑": "崎", "齋": "斎", "齊": "斎", "邊": "辺", "邉": "辺", "澤": "沢", "濱": "浜",
    "濵": "浜", "𠮷": "吉", "櫻": "桜", "廣": "広", "國": "国", "實": "実", "眞": "真", "德": "徳",
    "惠": "恵", "嶋": "島",
})
_HONORIFIC = re.compile(r"(?:様|さん|殿|氏)$")
_ALL_SPACE = re.compile(r"\s+")


def name_key(value: object) -> str:
    """The reservation system's exact-name rule: NFKC, every space (U+3000 too) removed."""
    return _ALL_SPACE.sub("", _clean(value))


def name_fold(value: object) -> str:
    """name_key with variant kanji folded and an honorific dropped: finds likely duplicates."""
    key = name_key(value).translate(_VARIANTS)
    stripped = _HONORIFIC.sub("", key)
    return stripped or key


def kana_key(value: object) -> str:
    """Readings compared in hiragana, so that ﾔﾏﾀﾞ, ヤマダ and やまだ agree."""
    return jaconv.kata2hira(name_key(value))


# --------------------------------------------------------------------------- text kinds


def _text(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    return _clean(value), None


def _name(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    return _collapse(_clean(value)), None


_KANA_OK = re.compile(r"[\u30a1-\u30fa\u30fb-\u30fe\u31f0-\u31ff ]*")


def _kana(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    """Readings in full-width katakana; other letters are flagged but kept for staff to fix."""
    text = _collapse(jaconv.hira2kata(_clean(value)))
    return text, None if _KANA_OK.fullmatch(text) else KANA_NOT_KANA


def _tags(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    return _clean(value), None


def _enum(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    """A vocabulary word, spelled as the vocabulary spells it (so the rules compare exactly)."""
    word = _vocab_map(tuple(vocab)).get(_clean(value))
    if word is None:
        return None, ENUM_BAD.format(" / ".join(vocab))
    return word, None


@lru_cache(maxsize=256)
def _vocab_map(vocab: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in vocab:
        out.setdefault(_clean(word), word)
    return out


# --------------------------------------------------------------------------- contact kinds

_EMAIL = re.compile(
    r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_PLACEHOLDER_EMAIL = re.compile(r"\d+@leporto\.com")


def _email(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    """Lower-case address; the booking system's phone-booking placeholder means no address."""
    text = _clean(value).lower()
    if _PLACEHOLDER_EMAIL.fullmatch(text):
        return None, None
    if not _EMAIL.fullmatch(text):
        return None, EMAIL_BAD
    return text, None


def _phone(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    """E.164; a number cell is a phone whose leading 0 Sheets dropped."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        return None, PHONE_BAD
    text = _int_text(int(value)) if isinstance(value, (int, float)) else _clean(value)
    return _phone_text(_dashed(text))


_PHONE_PUNCT = re.compile(r"[\s\-().]")
_PHONE_SIMPLE = re.compile(r"(?:\+81|0(?!10))?([1-9][0-9]{8,9})")  # 010 dials abroad


@lru_cache(maxsize=1 << 16)
def _phone_text(text: str) -> Result:
    """Plain Japanese numbers skip phonenumbers' slow parse; the validity check is the same."""
    simple = _PHONE_SIMPLE.fullmatch(_PHONE_PUNCT.sub("", text))
    if simple:
        nsn = simple[1]
        return (f"+81{nsn}", None) if _jp_valid(nsn) else (None, PHONE_BAD)
    try:
        number = phonenumbers.parse(text, "JP")
    except phonenumbers.NumberParseException:
        return None, PHONE_BAD
    return _e164(number)


def _jp_valid(nsn: str) -> bool:
    """phonenumbers.is_valid_number for +81 numbers, with its metadata patterns precompiled."""
    general, by_length = _jp_patterns()
    types = by_length.get(len(nsn))
    return bool(types and general.fullmatch(nsn) and types.fullmatch(nsn))


@lru_cache(maxsize=1)
def _jp_patterns() -> tuple[re.Pattern[str], dict[int, re.Pattern[str]]]:
    """Mirrors phonenumbers' _number_type_helper: valid = general pattern and any type's pattern."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region("JP")
    descs = [
        meta.premium_rate, meta.toll_free, meta.shared_cost, meta.voip, meta.personal_number,
        meta.pager, meta.uan, meta.voicemail, meta.fixed_line, meta.mobile,
    ]
    by_length = {}
    for length in meta.general_desc.possible_length:
        patterns = [
            f"(?:{d.national_number_pattern})" for d in descs
            if d is not None and d.national_number_pattern and (not d.possible_length or length in d.possible_length)
        ]
        if patterns:
            by_length[length] = re.compile("|".join(patterns))
    return re.compile(meta.general_desc.national_number_pattern), by_length


def _e164(number: phonenumbers.PhoneNumber) -> Result:
    if not phonenumbers.is_valid_number(number):
        return None, PHONE_BAD
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


_LINE_ID = re.compile(r"U[0-9a-f]{32}")


def _line_user_id(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    text = _clean(value)
    text = text[:1] + text[1:].lower()
    return (text, None) if _LINE_ID.fullmatch(text) else (None, LINE_ID_BAD)


_PLAIN_HTTPS = re.compile(r"https://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?:[/?#][!-~]*)?")


def _url(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    """Only https links with a host: anything else would be sent to a customer broken."""
    text = _clean(value)
    if _PLAIN_HTTPS.fullmatch(text):  # the usual Zoom link, accepted without urlsplit (~10 µs each)
        return text, None
    if re.search(r"\s", text):
        return None, URL_BAD
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return None, URL_BAD
    return (text, None) if parts.scheme == "https" and host else (None, URL_BAD)


# --------------------------------------------------------------------------- numbers and checks

_INT = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?")


def _int(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    if isinstance(value, bool):
        return None, INT_BAD
    if isinstance(value, int):
        return value, None
    if isinstance(value, float):
        return (int(value), None) if value.is_integer() else (None, INT_BAD)
    match = _INT.fullmatch(_dashed(_clean(value)))
    if not match:
        return None, INT_BAD
    try:
        return int(match[1] + match[2].replace(",", "")), None
    except ValueError:  # beyond Python's str-to-int digit limit
        return None, INT_BAD


def _check(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    """A tick box: the truths, or an explicit false; anything else is unreadable (and unticked)."""
    if isinstance(value, bool):
        return value, None
    if isinstance(value, (int, float)):
        return (value == 1, None) if value in (0, 1) else (False, CHECK_BAD)
    text = _clean(value)
    if text in _truth_set(tuple(truths)):
        return True, None
    return False, None if text in _FALSE_SET else CHECK_BAD


_FALSE_SET = frozenset(FALSES)


@lru_cache(maxsize=64)
def _truth_set(truths: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_clean(t) for t in truths)


# --------------------------------------------------------------------------- date-times

_EPOCH = dt.datetime(1899, 12, 30)  # Sheets' and Excel's day 0
_FIRST_YEAR, _LAST_YEAR = 1990, 2100
_SERIAL_MIN = (dt.datetime(_FIRST_YEAR, 1, 1) - _EPOCH).days
_SERIAL_MAX = (dt.datetime(_LAST_YEAR + 1, 1, 1) - _EPOCH).days
_JAPANESE_MARK = re.compile(
    r"(?<=\d)\s*(?:(?P<slash>[年月])\s*(?=\d)|(?P<space>日)|(?P<colon>[時分])\s*(?=\d)|(?P<hour>時)|[分秒])"
)
_MARK_AS = {"slash": "/", "space": " ", "colon": ":", "hour": ":00"}
_WEEKDAY = re.compile(r"\(\s*[月火水木金土日](?:曜日?)?\s*\)")
_FULL = re.compile(
    r"(?P<y>\d{4})[/.-](?P<mo>\d{1,2})[/.-](?P<d>\d{1,2})"
    r"(?:(?:\s*T\s*|\s+)(?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,9}))?)?"
    r"\s*(?P<tz>Z|JST|[+-]\d{2}(?::?\d{2})?)?)?",
    re.IGNORECASE,
)
_NO_YEAR = re.compile(r"\d{1,2}[/.-]\d{1,2}(?:\s+\d{1,2}:\d{1,2}(?::\d{1,2})?)?")
_SERIAL = re.compile(r"\d+(?:\.\d+)?")

Moment = tuple["dt.datetime | None", "str | None"]


def _moment(value: object, need_time: bool) -> Moment:
    """Any non-blank cell -> naive JST wall time rounded to the second, or a problem."""
    if isinstance(value, bool):
        return None, DATETIME_BAD
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime(warn=False)
    if isinstance(value, dt.datetime):
        return _from_datetime(value)
    if isinstance(value, dt.date):
        return (None, NO_TIME) if need_time else _finish(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, (int, float)):
        return _from_serial(value)
    if isinstance(value, dt.time):
        return None, DATETIME_BAD
    return _from_text(_clean(value), need_time)


def _from_datetime(value: dt.datetime) -> Moment:
    """openpyxl's naive date-times are JST; aware ones are converted."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        try:
            value = value.astimezone(TZ)
        except (OverflowError, ValueError):
            return None, OUT_OF_RANGE
    return _finish(value.replace(tzinfo=None))


def _from_serial(value: float) -> Moment:
    """Days since 1899-12-30; outside 1990-2100 a number is not a date someone meant."""
    if not _SERIAL_MIN <= value < _SERIAL_MAX:
        return None, DATETIME_BAD
    return _finish(_EPOCH + dt.timedelta(seconds=round(value * 86400)))


def _finish(value: dt.datetime) -> Moment:
    """Round half up to the second, then keep to the years a booking can have."""
    if value.microsecond:
        rounded = value + dt.timedelta(seconds=1) if value.microsecond >= 500_000 else value
        value = rounded.replace(microsecond=0)
    if not _FIRST_YEAR <= value.year <= _LAST_YEAR:
        return None, OUT_OF_RANGE
    return value, None


def _date_text(text: str) -> str:
    """Japanese marks (年月日時分秒), weekdays and dash variants reduced to one numeric form."""
    text = _dashed(text)
    if not text.isascii():
        text = _JAPANESE_MARK.sub(_mark_as, text)
    if "(" in text:
        text = _WEEKDAY.sub(" ", text)
    return _collapse(text)


def _mark_as(match: re.Match[str]) -> str:
    """年/月 -> '/', 日 -> ' ', 時/分 before digits -> ':', a bare 時 -> ':00', else nothing."""
    return _MARK_AS.get(match.lastgroup or "", "")


def _from_text(text: str, need_time: bool) -> Moment:
    text = _date_text(text)
    match = _FULL.fullmatch(text)
    if match:
        return _from_match(match, need_time)
    if _NO_YEAR.fullmatch(text):
        return None, NO_YEAR
    if _SERIAL.fullmatch(text):
        return _from_serial(float(text))
    return None, DATETIME_BAD


def _from_match(match: re.Match[str], need_time: bool) -> Moment:
    if match["h"] is None and need_time:
        return None, NO_TIME
    year = int(match["y"])
    if not _FIRST_YEAR <= year <= _LAST_YEAR:
        return None, OUT_OF_RANGE
    clock = [int(part) if part else 0 for part in match.group("h", "mi", "s")]
    micro = int(match["f"].ljust(6, "0")[:6]) if match["f"] else 0
    try:
        value = dt.datetime(year, int(match["mo"]), int(match["d"]), *clock, micro)
    except ValueError:
        return None, NO_SUCH_DATE
    offset = _offset(match["tz"])
    if offset is None:
        return _finish(value)
    if offset is False:
        return None, DATETIME_BAD
    return _from_datetime(value.replace(tzinfo=offset))


@lru_cache(maxsize=256)
def _offset(text: str | None) -> dt.tzinfo | bool | None:
    """None: no offset (JST); False: an offset that cannot exist."""
    if text is None:
        return None
    upper = text.upper()
    if upper in ("Z", "JST"):
        return dt.UTC if upper == "Z" else TZ
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        return False
    sign = -1 if text[0] == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _stamp(value: dt.datetime) -> pd.Timestamp:
    return pd.Timestamp(value, tz=TZ).as_unit("ns")


def _datetime(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    moment, problem = _moment(value, need_time=True)
    return (None if moment is None else _stamp(moment)), problem


def _date(value: object, vocab: tuple[str, ...], truths: tuple[str, ...]) -> Result:
    moment, problem = _moment(value, need_time=False)
    if moment is None:
        return None, DATE_BAD if problem == DATETIME_BAD else problem
    return moment.date(), None


# --------------------------------------------------------------------------- entry points

Normalizer = Callable[[object, tuple[str, ...], tuple[str, ...]], Result]
_NORMALIZERS: dict[str, Normalizer] = {
    "text": _text, "name": _name, "kana": _kana, "phone": _phone, "email": _email,
    "datetime": _datetime, "date": _date, "check": _check, "int": _int, "url": _url,
    "line_user_id": _line_user_id, "enum": _enum, "tags": _tags,
}


def normalize_value(
    kind: str,
    value: object,
    *,
    vocab: tuple[str, ...] = (),
    truths: tuple[str, ...] = DEFAULT_TRUTHS,
) -> Result:
    """(normalized value or None, problem text in Japanese or None). Never raises for a cell value.

    An unknown kind is a programming error (the mapping validates kinds) and raises ValueError.
    """
    normalizer = _normalizer(kind)
    value = _plain(value)
    empty = False if kind == "check" else None
    if _is_blank(value):
        return empty, None
    try:
        return normalizer(value, vocab, truths)
    except Exception as exc:  # noqa: BLE001 (logged without the value): a bug here must cost one cell, not the run
        _log_failure(kind, value, exc)
        return empty, UNREADABLE


def _log_failure(kind: str, value: object, exc: Exception) -> None:
    """The cell kind and where the code failed, never the value nor the exception's text: a cell
    holds phone numbers and names (the cell itself is in エラー, with its address)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    log.error("normalizer %s failed on a %s cell: %s at %s:%d %s()", kind, type(value).__name__,
              type(exc).__name__, Path(frame.filename).name, frame.lineno, frame.name)


def _normalizer(kind: str) -> Normalizer:
    try:
        return _NORMALIZERS[kind]
    except KeyError:
        raise ValueError(f"unknown cell kind {kind!r}; expected one of {KINDS}") from None


def normalize_series(
    kind: str,
    values: pd.Series,
    *,
    vocab: tuple[str, ...] = (),
    truths: tuple[str, ...] = DEFAULT_TRUTHS,
) -> tuple[pd.Series, pd.Series]:
    """normalize_value over a column, computed once per distinct value (columns repeat a lot).

    Values: dtype datetime64[ns, Asia/Tokyo] (NaT when missing) for datetime, bool for check,
    object (None when missing) otherwise. Problems: object, None where the cell is fine.
    """
    _normalizer(kind)
    codes, uniques = factorize_cells(values)
    if kind == "datetime":
        out, problems = _datetime_uniques(uniques)
    else:
        pairs = _normalized_uniques(kind, uniques, vocab, truths)
        out = _objects([p[0] for p in pairs])
        problems = [p[1] for p in pairs]
    index = values.index
    dtype = bool if kind == "check" else (None if kind == "datetime" else object)
    result = pd.Series(out.take(codes), index=index, dtype=dtype)
    return result, pd.Series(_objects(problems).take(codes), index=index, dtype=object)


def _normalized_uniques(kind: str, uniques: list[object], vocab: tuple[str, ...], truths: tuple[str, ...]) -> list[Result]:
    """normalize_value of each; a plain ASCII text (no outer space or control character: NFKC
    already, never blank) goes straight to its kind's normalizer, where normalize_value's guards
    would change nothing and cost more than the normalizer (ids, links, e-mails, most of a column)."""
    if kind == "text" and (plain := _plain_ascii_texts(uniques)) is not None:
        return plain
    normalizer = _normalizer(kind)
    out: list[Result] = []
    for u in uniques:
        if kind == "text" and _plain_text(u):
            out.append((u, None))
            continue
        if type(u) is str and u.isascii() and u and u[0] > " " and u[-1] > " ":
            try:  # not contextlib.suppress: entering one costs 0.6 µs, and a first run at 100k has 300k such cells
                out.append(normalizer(u, vocab, truths))
                continue
            except Exception:  # noqa: BLE001 (normalize_value below logs it and gives the problem)
                pass
        out.append(normalize_value(kind, u, vocab=vocab, truths=truths))
    return out


def _plain_ascii_texts(uniques: list[object]) -> list[Result] | None:
    """The text kind's answer when every distinct cell is ASCII text with no outer space (ids, codes,
    links: the biggest columns), found by one search of one joined text where the loop costs ~0.7 µs a
    cell; None when any is not (then the loop decides). Missing, if any, is the last unique."""
    texts = uniques[:-1] if uniques and uniques[-1] is None else uniques
    if not set(map(type, texts)) <= {str} or not all(map(str.isascii, texts)):  # stops at the first non-ASCII
        return None
    joined = "\x00" + "\x00".join(texts) + "\x00"  # type: ignore[arg-type]
    if joined.count("\x00") != len(texts) + 1 or _TWO_SPACES_OR_CONTROLS(joined):
        return None
    out: list[Result] = [(u, None) for u in texts]
    if len(texts) < len(uniques):
        out.append(normalize_value("text", None))
    return out


# Among texts each between NULs: any that is empty or has an outer space or control character (and
# a few plain ones with two inside in a row, which the loop then decides); a character class is a
# fast search, where an exact pattern with ^, $ and alternatives took ~5x longer.
_TWO_SPACES_OR_CONTROLS = re.compile(r"[\x00-\x20][\x00-\x20]").search


def _plain_text(value: object) -> bool:
    """Text that `text` keeps as it is: NFKC already, nothing invisible, nothing to strip (ids, codes,
    names, most of a big column; and every id the pipeline writes, in Japanese or not)."""
    if type(value) is not str or value == "" or value != value.strip():
        return False
    return value.isascii() or (not _HAS_INVISIBLE(value) and unicodedata.is_normalized("NFKC", value))


def factorize_cells(values: pd.Series) -> tuple[np.ndarray, list[object]]:
    """Codes and distinct cells; missing values become None, and 1, 1.0 and True stay distinct.

    Missing cells are found among the distinct ones (pandas' hash table finds them itself), not by
    `to_numpy(na_value=None)`: its isna over every row cost 0.72 s over the steady sheet's checked
    columns at 100k. (A NaN and a None in one mixed column then keep two codes, both given as None.)"""
    cells = values.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(cells, skipna=True) in ("string", "empty"):
        return _factorize_text(cells)
    n = len(cells)
    seen: dict[object, int] = {}
    try:
        first = np.fromiter(map(seen.setdefault, zip(map(type, cells), cells, strict=True), range(n)), np.intp, n)
    except TypeError:  # an unhashable cell: key it by identity
        seen.clear()
        first = np.fromiter((seen.setdefault(_key(c), i) for i, c in enumerate(cells)), np.intp, n)
    positions = np.flatnonzero(first == np.arange(n))
    rank = np.empty(n, dtype=np.intp)
    rank[positions] = np.arange(len(positions))
    return rank[first], [None if is_missing(cells[p]) else cells[p] for p in positions]


def _factorize_text(cells: np.ndarray) -> tuple[np.ndarray, list[object]]:
    """Text-only columns (the common case) use pandas' hash table; missing cells get code len(uniques)."""
    codes, uniques = pd.factorize(cells, use_na_sentinel=True)
    uniques = list(uniques)
    missing = codes < 0
    if missing.any():
        codes[missing] = len(uniques)
        uniques.append(None)
    return codes, uniques


def _key(cell: object) -> tuple[type, object]:
    try:
        hash(cell)
    except TypeError:
        return type(cell), id(cell)
    return type(cell), cell


def _objects(items: list[object]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _datetime_uniques(uniques: list[object]) -> tuple[pd.DatetimeIndex, list[str | None]]:
    """normalize_value's datetime parse, with the plain ASCII shapes parsed in one pd.to_datetime call.

    Only strings that the scalar parser reads the same way are given to pandas (see _PLAIN_DATETIME);
    anything pandas rejects (2026/02/30) or out of range goes through the scalar parser for its problem.
    """
    plain = pd.to_datetime(
        pd.Series([_plain_datetime(u) for u in uniques], dtype=object),
        format="%Y/%m/%d %H:%M:%S", errors="coerce",
    )
    done = plain.notna() & plain.dt.year.between(_FIRST_YEAR, _LAST_YEAR)
    naive = plain.where(done).dt.as_unit("ns").to_numpy(copy=True)
    problems: list[str | None] = [None] * len(uniques)
    rest = np.flatnonzero(~done.to_numpy())
    moments = [_moment_or_blank(uniques[i]) for i in rest]
    if len(rest):
        naive[rest] = pd.DatetimeIndex([m[0] for m in moments]).as_unit("ns").to_numpy()
    for i, (_, problem) in zip(rest, moments, strict=True):
        problems[i] = problem
    return pd.DatetimeIndex(naive).tz_localize(TZ), problems


_PLAIN_DATETIME = re.compile(
    r"((?:19|20)[0-9]{2}|2100)[/-]([0-9]{1,2})[/-]([0-9]{1,2})[ T]([0-9]{1,2}):([0-9]{2})(?::([0-5][0-9]))?"
)


def _plain_datetime(value: object) -> str | None:
    """`2026/11/20 10:00`, `2026-11-20T10:00:00` ... as one pandas format; None for every other cell.

    Seconds 60 and 61 are left to the scalar parser: pandas' %S reads them as a leap second and
    rolls over to the next minute, where the scalar parser calls the cell unreadable.
    """
    match = _PLAIN_DATETIME.fullmatch(value) if type(value) is str else None
    if match is None:
        return None
    year, month, day, hour, minute, second = match.groups()
    return f"{year}/{month}/{day} {hour}:{minute}:{second or '00'}"


def _moment_or_blank(value: object) -> Moment:
    value = _plain(value)
    if _is_blank(value):
        return None, None
    try:
        return _moment(value, need_time=True)
    except Exception as exc:  # noqa: BLE001 (as in normalize_value)
        _log_failure("datetime", value, exc)
        return None, UNREADABLE
