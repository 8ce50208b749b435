"""Cell normalizers: the contract's examples, and properties over arbitrary cells."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import unicodedata
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import phonenumbers
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasks.frames import DATETIME
from tasks.normalize import (
    CHECK_BAD,
    DATE_BAD,
    DATETIME_BAD,
    DEFAULT_TRUTHS,
    EMAIL_BAD,
    INT_BAD,
    KANA_NOT_KANA,
    KINDS,
    LINE_ID_BAD,
    NO_SUCH_DATE,
    NO_TIME,
    NO_YEAR,
    OUT_OF_RANGE,
    PHONE_BAD,
    TZ,
    UNREADABLE,
    URL_BAD,
    _e164,
    _is_blank,
    _jp_valid,
    _nfkc,
    _phone_text,
    _plain_ascii_texts,
    _plain_text,
    factorize_cells,
    kana_key,
    name_fold,
    name_key,
    normalize_series,
    normalize_value,
    to_text,
)

VOCAB = ("個別相談", "2回目面談", "ＡＢＣ")
ENUM_BAD = "次のどれかを入力してください: 個別相談 / 2回目面談 / ＡＢＣ"
HEX = "0123456789abcdef0123456789abcdef"
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def jst(*parts: int) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime(*parts), tz=TZ)


TEN = jst(2026, 11, 20, 10, 0)
SERIAL_TEN = 46346 + 10 / 24  # 2026-11-20 10:00 as a Sheets serial

EXAMPLES = [
    # datetime: the contract's inputs
    ("datetime", "2026/11/20 10:00", TEN, None),
    ("datetime", "2026-11-20 10:00", TEN, None),
    ("datetime", SERIAL_TEN, TEN, None),
    ("datetime", str(SERIAL_TEN), TEN, None),
    ("datetime", 46346, jst(2026, 11, 20), None),
    ("datetime", "2026/11/20 10:00:00", TEN, None),
    ("datetime", "2026-11-20T10:00", TEN, None),
    ("datetime", "2026-11-20T10:00:00+09:00", TEN, None),
    ("datetime", "2026-11-20T01:00:00+00:00", TEN, None),
    ("datetime", "2026-11-20T01:00:00Z", TEN, None),
    ("datetime", "2026-11-19T20:00:00-05:00", TEN, None),
    ("datetime", "2026年11月20日 10時00分", TEN, None),
    ("datetime", "2026年11月20日 10:00", TEN, None),
    ("datetime", "2026年11月20日(金) 10時", TEN, None),
    ("datetime", "２０２６／１１／２０　１０：００", TEN, None),
    ("datetime", "2026‐11‐20 10:00", TEN, None),
    ("datetime", " 2026/11/20  10:00 ", TEN, None),
    ("datetime", "2026/1/5 9:00", jst(2026, 1, 5, 9, 0), None),
    ("datetime", "2026/11/20 10:00:00.6", jst(2026, 11, 20, 10, 0, 1), None),
    ("datetime", dt.datetime(2026, 11, 20, 10, 0), TEN, None),
    ("datetime", dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC), TEN, None),
    ("datetime", dt.datetime(2026, 11, 20, 10, 0, 0, 600_000), jst(2026, 11, 20, 10, 0, 1), None),
    ("datetime", pd.Timestamp("2026-11-20 01:00", tz="UTC"), TEN, None),
    ("datetime", pd.Timestamp("2026-11-20 10:00"), TEN, None),
    ("datetime", "2026/11/20", None, NO_TIME),
    ("datetime", dt.date(2026, 11, 20), None, NO_TIME),
    ("datetime", "11/25 14:00", None, NO_YEAR),
    ("datetime", "11月25日 14時", None, NO_YEAR),
    ("datetime", "2026/02/30 10:00", None, NO_SUCH_DATE),
    ("datetime", "2026/11/20 25:00", None, NO_SUCH_DATE),
    ("datetime", "1800/01/01 10:00", None, OUT_OF_RANGE),
    ("datetime", dt.datetime(1, 1, 1), None, OUT_OF_RANGE),
    ("datetime", "2026-11-20T10:00+25:00", None, DATETIME_BAD),
    ("datetime", "来週の火曜", None, DATETIME_BAD),
    ("datetime", "10:00", None, DATETIME_BAD),
    ("datetime", dt.time(10, 0), None, DATETIME_BAD),
    ("datetime", True, None, DATETIME_BAD),
    ("datetime", 12, None, DATETIME_BAD),
    ("datetime", math.inf, None, DATETIME_BAD),
    # date
    ("date", "2026/11/20", dt.date(2026, 11, 20), None),
    ("date", "2026/11/20 10:00", dt.date(2026, 11, 20), None),
    ("date", "2026年11月20日", dt.date(2026, 11, 20), None),
    ("date", 46346, dt.date(2026, 11, 20), None),
    ("date", 46346.99, dt.date(2026, 11, 20), None),
    ("date", dt.datetime(2026, 11, 20), dt.date(2026, 11, 20), None),
    ("date", dt.date(2026, 11, 20), dt.date(2026, 11, 20), None),
    ("date", "2026/02/30", None, NO_SUCH_DATE),
    ("date", "11/25", None, NO_YEAR),
    ("date", "いつか", None, DATE_BAD),
    # phone
    ("phone", "090-1234-5678", "+819012345678", None),
    ("phone", "０９０１２３４５６７８", "+819012345678", None),
    ("phone", "+81 90-1234-5678", "+819012345678", None),
    ("phone", 9012345678.0, "+819012345678", None),
    ("phone", 9012345678, "+819012345678", None),
    ("phone", "9012345678", "+819012345678", None),
    ("phone", "090ｰ1234ｰ5678", "+819012345678", None),
    ("phone", "090ー1234ー5678", "+819012345678", None),
    ("phone", "090−1234−5678", "+819012345678", None),
    ("phone", "(090)1234-5678", "+819012345678", None),
    ("phone", "03-1234-5678", "+81312345678", None),
    ("phone", "0120-123-456", "+81120123456", None),
    ("phone", "+1 650-253-0000", "+16502530000", None),
    ("phone", "090-1234-567", None, PHONE_BAD),
    ("phone", "12345", None, PHONE_BAD),
    ("phone", "電話なし", None, PHONE_BAD),
    ("phone", 9012345678.5, None, PHONE_BAD),
    ("phone", True, None, PHONE_BAD),
    # email
    ("email", "Taro.Yamada＠Example.co.jp", "taro.yamada@example.co.jp", None),
    ("email", " taro@example.com ", "taro@example.com", None),
    ("email", "0123@leporto.com", None, None),
    ("email", "０１２３＠ｌｅｐｏｒｔｏ．ｃｏｍ", None, None),
    ("email", "taro@", None, EMAIL_BAD),
    ("email", "taro@example", None, EMAIL_BAD),
    ("email", "taro yamada@example.com", None, EMAIL_BAD),
    ("email", "山田", None, EMAIL_BAD),
    # kana
    ("kana", "ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ タロウ", None),
    ("kana", "やまだ", "ヤマダ", None),
    ("kana", "やまだ　たろう", "ヤマダ タロウ", None),
    ("kana", "  ヤマダ   タロウ ", "ヤマダ タロウ", None),
    ("kana", "ヤマダ・ジョー", "ヤマダ・ジョー", None),
    ("kana", "山田", "山田", KANA_NOT_KANA),
    ("kana", "Yamada", "Yamada", KANA_NOT_KANA),
    # name
    ("name", "山田　太郎", "山田 太郎", None),
    ("name", " 山田  太郎 ", "山田 太郎", None),
    ("name", "ＡＢＣ", "ABC", None),
    # text
    ("text", 12, "12", None),
    ("text", 12.0, "12", None),
    ("text", 12.5, "12.5", None),
    ("text", "  ａｂｃ　", "abc", None),
    ("text", True, "TRUE", None),
    ("text", dt.datetime(2026, 11, 20, 10, 0), "2026/11/20 10:00", None),
    # check
    *[("check", truth, True, None) for truth in DEFAULT_TRUTHS],
    ("check", " TRUE ", True, None),
    ("check", "ＴＲＵＥ", True, None),
    ("check", "１", True, None),
    ("check", True, True, None),
    ("check", 1, True, None),
    ("check", 1.0, True, None),
    *[("check", false, False, None) for false in ("FALSE", "false", "0", "×", "未", False, 0, 0.0)],
    ("check", "たぶん", False, CHECK_BAD),
    ("check", 2, False, CHECK_BAD),
    # int
    ("int", 12, 12, None),
    ("int", 12.0, 12, None),
    ("int", "12", 12, None),
    ("int", "１２", 12, None),
    ("int", "1,234", 1234, None),
    ("int", "１，２３４", 1234, None),
    ("int", "−5", -5, None),
    ("int", "12.0", 12, None),
    ("int", 12.5, None, INT_BAD),
    ("int", "12個", None, INT_BAD),
    ("int", "1,23", None, INT_BAD),
    ("int", True, None, INT_BAD),
    # url
    ("url", "https://zoom.us/j/123?pwd=abc", "https://zoom.us/j/123?pwd=abc", None),
    ("url", " https://zoom.us/j/1 ", "https://zoom.us/j/1", None),
    ("url", "ｈｔｔｐｓ：／／ｚｏｏｍ．ｕｓ／ｊ／１", "https://zoom.us/j/1", None),
    ("url", "http://zoom.us/j/1", None, URL_BAD),
    ("url", "zoom.us/j/1", None, URL_BAD),
    ("url", "https://", None, URL_BAD),
    ("url", "https://zoom.us/j/1 pwd", None, URL_BAD),
    ("url", "https://[broken", None, URL_BAD),
    # line_user_id
    ("line_user_id", "U" + HEX, "U" + HEX, None),
    ("line_user_id", "U" + HEX.upper(), "U" + HEX, None),
    ("line_user_id", " Ｕ" + HEX + " ", "U" + HEX, None),
    ("line_user_id", "U1234", None, LINE_ID_BAD),
    ("line_user_id", "u" + HEX, None, LINE_ID_BAD),
    # enum
    ("enum", "２回目面談", "2回目面談", None),
    ("enum", " 個別相談 ", "個別相談", None),
    ("enum", "ABC", "ＡＢＣ", None),
    ("enum", "個別", None, ENUM_BAD),
    # tags
    ("tags", " 【セミナー】個別相談予約完了，タグ２ ", "【セミナー】個別相談予約完了,タグ2", None),
    ("tags", "タグ1、タグ2\nタグ3", "タグ1、タグ2\nタグ3", None),
]


@pytest.mark.parametrize(("kind", "value", "expected", "problem"), EXAMPLES)
def test_examples(kind, value, expected, problem):
    assert normalize_value(kind, value, vocab=VOCAB) == (expected, problem)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("blank", [None, "", "   ", "\u3000", " \t\n", float("nan"), pd.NA, pd.NaT, "\u200b"])
def test_blank_is_nothing(kind, blank):
    empty = False if kind == "check" else None
    assert normalize_value(kind, blank, vocab=VOCAB) == (empty, None)


def test_custom_truths():
    assert normalize_value("check", "はい", truths=("はい",)) == (True, None)
    assert normalize_value("check", "TRUE", truths=("はい",)) == (False, CHECK_BAD)


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown cell kind"):
        normalize_value("colour", "red")


def test_datetime_output_is_tokyo_to_the_second():
    value, _ = normalize_value("datetime", "2026-11-20T01:00:00.4+00:00")
    assert isinstance(value, pd.Timestamp)
    assert value.tz == TZ and value == TEN and value.microsecond == 0


# --------------------------------------------------------------------------- keys

VARIANTS = [("髙橋", "高橋"), ("山﨑", "山崎"), ("齋藤", "斎藤"), ("齊藤", "斎藤"), ("渡邊", "渡辺"), ("渡邉", "渡辺"),
            ("澤田", "沢田"), ("濱田", "浜田"), ("𠮷田", "吉田"), ("櫻井", "桜井"), ("廣瀬", "広瀬"), ("國分", "国分"),
            ("實", "実"), ("眞子", "真子"), ("德永", "徳永"), ("惠子", "恵子")]


@pytest.mark.parametrize(("variant", "common"), VARIANTS)
def test_name_fold_folds_variants_but_name_key_does_not(variant, common):
    assert name_fold(variant) == name_fold(common) == common
    assert name_key(variant) != name_key(common)


def test_name_key_ignores_every_space():
    assert name_key("山田　太郎") == name_key(" 山田 太郎 ") == name_key("山田太郎") == "山田太郎"
    assert name_key("ＹＡＭＡＤＡ Ｔａｒｏ") == "YAMADATaro"


@pytest.mark.parametrize("honorific", ["様", "さん", "殿", "氏"])
def test_name_fold_drops_an_honorific(honorific):
    assert name_fold(f"山田　太郎{honorific}") == "山田太郎"
    assert name_key(f"山田太郎{honorific}") == f"山田太郎{honorific}"


def test_name_fold_keeps_a_name_that_is_only_an_honorific():
    assert name_fold("様") == "様"


def test_kana_key_agrees_across_scripts():
    assert kana_key("ﾔﾏﾀﾞ ﾀﾛｳ") == kana_key("ヤマダ　タロウ") == kana_key("やまだたろう") == "やまだたろう"


# --------------------------------------------------------------------------- to_text


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), (float("nan"), ""), (pd.NaT, ""), (True, "TRUE"), (False, "FALSE"), (12, "12"), (12.0, "12"),
    (-0.0, "0"), (12.5, "12.5"), (9012345678.0, "9012345678"), ("  as is ", "  as is "),
    (dt.datetime(2026, 11, 20, 10, 0), "2026/11/20 10:00"),
    (dt.datetime(2026, 11, 20, 10, 0, 5), "2026/11/20 10:00:05"),
    (pd.Timestamp("2026-11-20 01:00", tz="UTC"), "2026/11/20 10:00"), (TEN, "2026/11/20 10:00"),
    (dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC), "2026/11/20 10:00"),
    (dt.date(2026, 1, 5), "2026/01/05"), (dt.time(9, 5), "09:05"),
])
def test_to_text(value, text):
    assert to_text(value) == text


@PROPERTY
@given(st.text())
def test_to_text_keeps_text(text):
    assert to_text(text) == text


@PROPERTY
@given(st.integers())
def test_to_text_round_trips_ints(number):
    assert normalize_value("int", to_text(number)) == (number, None)
    if abs(number) < 10**15:
        assert to_text(float(number)) == to_text(number)


@PROPERTY
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_to_text_round_trips_floats(number):
    assert float(to_text(number)) == number


@PROPERTY
@given(st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 12, 31)))
def test_to_text_round_trips_datetimes(moment):
    moment = moment.replace(microsecond=0)
    assert normalize_value("datetime", to_text(moment)) == (pd.Timestamp(moment, tz=TZ), None)
    assert normalize_value("date", to_text(moment.date())) == (moment.date(), None)
    assert to_text(pd.Timestamp(moment, tz=TZ).tz_convert("UTC")) == to_text(moment)


@PROPERTY
@given(st.booleans())
def test_to_text_round_trips_checks(flag):
    assert normalize_value("check", to_text(flag)) == (flag, None)


# --------------------------------------------------------------------------- arbitrary cells

ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=-5)), dt.timezone(dt.timedelta(hours=14)),
         ZoneInfo("America/New_York"), TZ]
DATE_TEMPLATES = [
    "{y}/{mo}/{d} {h}:{mi:02d}", "{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}", "{y:04d}/{mo}/{d} {h}:{mi:02d}",
    "{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}",
    "{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}+00:00", "{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}-03:30",
    "{y}年{mo}月{d}日 {h}時{mi:02d}分", "{y}年{mo}月{d}日 {h}:{mi:02d}", "{mo}/{d} {h}:{mi:02d}", "{y}/{mo}/{d}",
    "{y}/{mo}/{d}(金) {h}:{mi:02d}", "{y}/{mo}/{d} {h}:{mi:02d}:{s:02d}.{f}", "２０２６/{mo}/{d} {h}:{mi:02d}",
]
date_texts = st.builds(
    lambda template, **parts: template.format(**parts),
    st.sampled_from(DATE_TEMPLATES), y=st.one_of(st.integers(1985, 2105), st.integers(0, 9999)),
    mo=st.integers(0, 13), d=st.integers(0, 32),
    h=st.integers(0, 25), mi=st.integers(0, 61), s=st.integers(0, 61), f=st.integers(0, 999_999),
)
phone_texts = st.from_regex(r"\A(\+81 ?|0|\+1 )?[1-9][0-9]{1,3}[-ｰー ]?[0-9]{2,4}[-ｰー ]?[0-9]{3,4}\Z")
SAMPLES = [
    "090-1234-5678", "０９０１２３４５６７８", "Taro.Yamada＠Example.co.jp", "0123@leporto.com", "ﾔﾏﾀﾞ ﾀﾛｳ", "やまだ",
    "山田　太郎", "髙橋様", "✓", "○", "済", "TRUE", "×", "１，２３４", "https://zoom.us/j/1", "U" + HEX.upper(),
    "２回目面談", "ABC", "個別相談", "タグ1、タグ2", "46346.5", "=SUM(A1)", "\u00a8", "ゟ", "ﾞ",
]
cells = st.one_of(
    st.none(), st.text(), st.text(st.characters(max_codepoint=127)),  # ASCII: normalize_series' short cut
    st.sampled_from(SAMPLES), date_texts, phone_texts, st.integers(), st.floats(),
    st.booleans(), st.datetimes(), st.datetimes(timezones=st.sampled_from(ZONES)), st.dates(), st.times(),
    st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(pd.Timestamp),
    st.sampled_from([float("nan"), pd.NA, pd.NaT, -0.0, math.inf, SERIAL_TEN, 46346, 9012345678.0]),
)

TYPES = {"datetime": pd.Timestamp, "date": dt.date, "check": bool, "int": int}


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(cell=cells)
def test_never_raises_and_is_idempotent(kind, cell):
    value, problem = normalize_value(kind, cell, vocab=VOCAB)
    assert problem is None or (isinstance(problem, str) and problem != UNREADABLE)
    if value is None:
        return
    assert isinstance(value, TYPES.get(kind, str)) and not (kind == "int" and isinstance(value, bool))
    again, again_problem = normalize_value(kind, value, vocab=VOCAB)
    assert again == value
    if problem is None or kind == "kana":
        assert again_problem == problem


def _same(got, expected) -> bool:
    """None and NaT both mean no value (a datetime column is typed)."""
    if expected is None:
        return got is None or got is pd.NaT
    return bool(got == expected)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.lists(cells, min_size=1, max_size=6).flatmap(
    lambda pool: st.lists(st.sampled_from([*pool, None, float("nan")]), max_size=30)
))
def test_series_agrees_with_value(kind, cells):
    index = pd.Index([f"row{i}" for i in range(len(cells))][::-1])
    values, problems = normalize_series(kind, pd.Series(cells, index=index, dtype=object), vocab=VOCAB)
    assert values.index.equals(index) and problems.index.equals(index)
    for label, cell in zip(index, cells, strict=True):
        expected, expected_problem = normalize_value(kind, cell, vocab=VOCAB)
        assert _same(values[label], expected), (cell, values[label], expected)
        assert problems[label] == expected_problem


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.sampled_from("ab 1　（）ＡＺａ～！ｱア予約①ﾞ\u0301\u3099\t\n\u200b\ufeff") | st.characters(), max_size=16))
@example(text="予約 R1 がキャンセルされました（区分なし）")  # what the pipeline writes: not NFKC
@example(text="タグ追加:C1:見込み:202611201000")  # an operation id: NFKC already
@example(text="\u200b予約")
@example(text="\ufeff ")
@example(text="（Ａ\u0301）　ｶ\u3099")  # full-width then a combining mark: NFKC composes across the pair
def test_text_short_cuts_agree_with_nfkc(text):
    """The short cuts for text that is NFKC already give what NFKC of the visible text gives."""
    visible = text.replace("\u200b", "").replace("\ufeff", "")
    expected = unicodedata.normalize("NFKC", visible)
    assert _nfkc(text) == expected
    assert _is_blank(text) == (visible.strip() == "")
    if _plain_text(text):
        assert normalize_value("text", text) == (text, None) and expected.strip() == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.lists(st.none() | st.text(st.characters(max_codepoint=127), max_size=6) | st.sampled_from(
    ["R000001", "C1", "", " C1", "C1 ", "\tC1", "C1\x1f", "a\x00b", "\x01", "x\x7f", "https://zoom.us/j/1"]), max_size=20))
@example(cells=["C1", "C2", None])
@example(cells=[""])
def test_series_of_ascii_text_agrees_with_value(cells):
    """Columns of ASCII text (ids, codes, links) take the joined-text short cut when all of it is plain."""
    test_series_agrees_with_value.hypothesis.inner_test("text", cells)


def test_the_joined_text_short_cut_is_taken_only_when_every_text_is_plain():
    assert _plain_ascii_texts(["R000001", "https://zoom.us/j/1", None]) == [("R000001", None), ("https://zoom.us/j/1", None),
                                                                            (None, None)]
    for odd in ("", " R2", "R2 ", "R2\n", "\x01R2", "a\x00b", "予約", None):
        assert _plain_ascii_texts(["R000001", odd, "R3"]) is None, odd


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.lists(date_texts, min_size=1, max_size=5).flatmap(lambda pool: st.lists(st.sampled_from(pool), max_size=12)))
@example(cells=["1990-01-01 00:00:60", "2026/11/20 23:59:61"])  # pandas' %S reads a leap second
def test_series_agrees_with_value_on_date_texts(cells):
    """The series path parses plain shapes with pandas: it must read them as the scalar parser does."""
    test_series_agrees_with_value.hypothesis.inner_test("datetime", cells)


def test_series_dtypes_and_distinct_types():
    cells = pd.Series([1, 1.0, True, "1", None, "TRUE"], dtype=object)
    texts, _ = normalize_series("text", cells)
    assert texts.tolist() == ["1", "1", "TRUE", "1", None, "TRUE"] and texts.dtype == object
    checks, problems = normalize_series("check", cells)
    assert checks.dtype == bool and checks.tolist() == [True, True, True, True, False, True]
    assert problems.isna().all()
    when, _ = normalize_series("datetime", pd.Series(["2026/11/20 10:00", None, SERIAL_TEN]))
    assert str(when.dtype) == DATETIME and when.isna().tolist() == [False, True, False]


_CELL_POOL = [1, 1.0, True, 0, 0.0, False, 2, "1", "TRUE", "", None, dt.date(2026, 11, 20), dt.datetime(2026, 11, 20),
              pd.Timestamp("2026-11-20"), dt.datetime(2026, 11, 20, 10), 45981, 45981.0, "2026/11/20"]


@PROPERTY
@given(st.lists(st.sampled_from(_CELL_POOL), max_size=12))
@example([1, 1.0, True, None])  # 1 == 1.0 == True: kept apart by type
@example([dt.date(2026, 11, 20), dt.datetime(2026, 11, 20), pd.Timestamp("2026-11-20"), 45981.0])
def test_factorize_cells_keeps_cells_of_different_types_apart(cells):
    """Two cells share a code exactly when they have one type and one value (the rules read each
    distinct cell once: 1 and True in a タグ cell are different texts), and each code gives its cell back."""
    codes, uniques = factorize_cells(pd.Series(cells, dtype=object))
    keys = [(type(c), c) for c in cells]
    for i, a in enumerate(keys):
        back = uniques[codes[i]]
        assert type(back) is type(cells[i]) and (back == cells[i] or back is cells[i])
        for j, b in enumerate(keys):
            assert (codes[i] == codes[j]) == (a == b), (cells[i], cells[j])


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("datetime", "check")])
def test_series_gives_none_for_missing_never_nan(kind):
    """check keeps these columns as normalize_series gives them: a missing value must be None (no
    NaN, NaT or pd.NA), whatever odd cell it came from, since the rules test `is None` and `isinstance`."""
    odd = [None, float("nan"), pd.NaT, pd.NA, "", " ", "\u3000", "nan", "NaN", "NaT", "None", "-", "ー", "1e400",
           float("inf"), 0, 1.5, True, "0000/00/00", "2026/13/40", 45981.0, dt.date(2026, 1, 1), dt.datetime(2026, 1, 1)]
    values, _ = normalize_series(kind, pd.Series(odd, dtype=object))
    assert values.dtype == object
    assert all(v is None or not pd.isna(v) for v in values.tolist())


@pytest.mark.parametrize("others", [["R1", "R2"], [1, "1", True]])  # a text column, a mixed one
def test_factorize_cells_gives_none_for_every_missing_cell(others):
    cells = [*others, None, float("nan"), pd.NaT, pd.NA, others[0]]
    codes, uniques = factorize_cells(pd.Series(cells, dtype=object))
    back = [uniques[c] for c in codes]
    assert back[: len(others)] == others and back[-1] == others[0]
    assert [type(b) for b in back[: len(others)]] == [type(o) for o in others]
    assert back[len(others):-1] == [None] * 4


def test_series_accepts_a_typed_datetime_column():
    typed = pd.Series(pd.to_datetime(["2026-11-20 01:00", None]).tz_localize("UTC"))
    values, problems = normalize_series("datetime", typed)
    assert values[0] == TEN and pd.isna(values[1]) and problems.isna().all()


def test_series_of_nothing():
    values, problems = normalize_series("phone", pd.Series([], dtype=object))
    assert values.empty and problems.empty


# --------------------------------------------------------------------------- the phone shortcut


def _parsed(text: str):
    try:
        return _e164(phonenumbers.parse(text, "JP"))
    except phonenumbers.NumberParseException:
        return None, PHONE_BAD


japanese_numbers = st.builds(
    lambda prefix, nsn, cuts, sep: prefix + sep.join(nsn[a:b] for a, b in zip((0, *cuts), (*cuts, None), strict=True)),
    st.sampled_from(["", "0", "+81", "+81 ", "(0", "010", "00", "+1 "]),
    st.one_of(st.from_regex(r"\A[1-9][0-9]{7,11}\Z"), st.from_regex(r"\A[5-9]0[0-9]{8}\Z")),
    st.sampled_from([(), (2, 6), (1, 5), (3, 6), (4,)]),
    st.sampled_from(["", "-", " ", ".", ")", "ー"]),
)


@PROPERTY
@given(st.one_of(japanese_numbers, st.from_regex(r"\A(\+81|0|\(0)?[0-9]{1,4}[-ー ).]?[0-9]{2,4}[- .]?[0-9]{2,5}\Z")))
def test_phone_shortcut_agrees_with_phonenumbers(text):
    assert _phone_text.__wrapped__(text) == _parsed(text)


@PROPERTY
@given(st.one_of(st.from_regex(r"\A[1-9][0-9]{7,11}\Z"), st.from_regex(r"\A[1-9]0?[0-9]{8}\Z")))
def test_jp_validity_agrees_with_phonenumbers(nsn):
    number = phonenumbers.PhoneNumber(country_code=81, national_number=int(nsn))
    assert _jp_valid(nsn) == phonenumbers.is_valid_number(number)


def test_phone_shortcut_on_every_prefix():
    """Deterministic sweep: every 3-digit start, both lengths, a few tails, as staff type them."""
    for start in range(100, 1000):
        for tail in ("000000", "1234567", "9999999"):
            for nsn in (f"{start}{tail}"[:9], f"{start}{tail}"[:10]):
                number = phonenumbers.PhoneNumber(country_code=81, national_number=int(nsn))
                assert _jp_valid(nsn) == phonenumbers.is_valid_number(number), nsn
                text = f"0{nsn[:2]}-{nsn[2:6]}-{nsn[6:]}"
                assert _phone_text.__wrapped__(text) == _parsed(text), text


class _Hostile:
    """A cell value whose text cannot be taken, and whose repr and error carry a phone number."""

    def __repr__(self) -> str:
        return "_Hostile('090-1234-5678')"

    def __str__(self) -> str:
        raise ValueError("cannot show 090-1234-5678")


def test_a_normalizer_bug_logs_the_kind_and_the_place_never_the_value(caplog):
    with caplog.at_level(logging.ERROR, logger="tasks.normalize"):
        assert normalize_value("phone", _Hostile()) == (None, UNREADABLE)
        values, problems = normalize_series("datetime", pd.Series([_Hostile()], dtype=object))
    assert values.isna().all() and problems.tolist() == [UNREADABLE]
    assert [r.levelno for r in caplog.records] == [logging.ERROR] * len(caplog.records) and len(caplog.records) >= 2
    text = caplog.text
    assert "normalizer phone failed on a _Hostile cell: ValueError" in text and "normalizer datetime failed" in text
    assert "1234" not in text


def _url_by_urlsplit(text: str):
    """The long way _url takes for any link its plain-https shortcut does not recognise."""
    try:
        parts = urlsplit(text)
        ok = not re.search(r"\s", text) and parts.scheme == "https" and bool(parts.hostname)
    except ValueError:
        ok = False
    return (text, None) if ok else (None, URL_BAD)


@settings(max_examples=400, deadline=None)
@given(text=st.from_regex(r"\A(https?|HTTPS|ftp)://[A-Za-z0-9.\-\[\]:@_%]{0,12}([/?#][!-~]{0,12})?\Z"))
@example(text="https://zoom.us/j/1?pwd=[x]")
@example(text="https://a..b/")
def test_plain_https_shortcut_agrees_with_urlsplit(text):
    assert normalize_value("url", text) == _url_by_urlsplit(text)
