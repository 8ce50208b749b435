"""Shared fixtures: small workbooks written as real .xlsx files, and a fixed clock."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from tasks.mapping import load_mapping

NOW = pd.Timestamp("2026-11-20T10:00", tz="Asia/Tokyo")

CUSTOMER_HEADERS = [
    "お客様番号", "姓", "名", "セイ", "メイ", "LINE名", "LINEユーザーID", "電話番号", "メールアドレス", "流入経路",
    "セミナー参加日", "営業担当", "要注意メモ", "ブラックリストメモ", "個別メモ", "初回登録日", "タグ",
]
BOOKING_HEADERS = ["予約ID", "お客様番号", "営業担当", "メニュー", "開始日時", "ステータス", "アクション実行", "Zoomリンク",
                   "結果", "プラン", "お礼LINE", "キャンセル区分"]
STAFF_HEADERS = ["名前", "役割", "通知先", "有効"]
STAFF_ROWS = [["佐藤", "営業", "sato", "TRUE"], ["鈴木", "営業", "suzuki", "TRUE"],
              ["高橋", "決済リンク作成", "links", "TRUE"], ["田中", "運営", "ops", "TRUE"]]


def customer(cid: str, family: str = "山田", given: str = "太郎", **kw) -> list:
    fields = {"LINEユーザーID": "", "電話番号": "", "メールアドレス": "", "営業担当": "佐藤", "タグ": "", **kw}
    row = [cid, family, given, "ヤマダ", "タロウ"] + [fields.get(h, "") for h in CUSTOMER_HEADERS[5:]]
    return row


def booking(bid: str, cid: str, start, status: str = "予約中来店前", **kw) -> list:
    fields = {"営業担当": "佐藤", "メニュー": "個別相談", "アクション実行": "実行する", "Zoomリンク": "https://zoom.us/j/1", **kw}
    return [bid, cid, fields["営業担当"], fields["メニュー"], start, status] + [fields.get(h, "") for h in BOOKING_HEADERS[6:]]


def write_book(path: Path, tabs: dict[str, list[list]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in tabs.items():
        ws = wb.create_sheet(title)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value in (None, ""):
                    continue
                cell = ws.cell(row=r, column=c, value=value)
                if isinstance(value, str):
                    cell.data_type = "s"
                elif isinstance(value, dt.datetime):
                    cell.number_format = "yyyy/mm/dd hh:mm"
    wb.save(path)
    return path


def team_tabs(customers: list[list], bookings: list[list]) -> dict[str, list[list]]:
    return {"顧客": [CUSTOMER_HEADERS, *customers], "予約": [BOOKING_HEADERS, *bookings],
            "担当者": [STAFF_HEADERS, *STAFF_ROWS]}


def tab_rows(path: Path, title: str) -> list[list]:
    wb = openpyxl.load_workbook(path)
    rows = [list(r) for r in wb[title].iter_rows(values_only=True)]
    return [r for r in rows if any(v not in (None, "") for v in r)]


def tab_records(path: Path, title: str) -> list[dict]:
    rows = tab_rows(path, title)
    return [dict(zip(rows[0], r, strict=False)) for r in rows[1:]] if rows else []


def set_cell(path: Path, title: str, key: str, header: str, value) -> None:
    """A person types `value` into the row whose first cell is `key` (KeyError when there is none)."""
    wb = openpyxl.load_workbook(path)
    ws = wb[title]
    head = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[0].value == key:
            row[head.index(header)].value = value
            break
    else:
        raise KeyError(key)
    wb.save(path)


def log_down_to(path: Path, row: int, mapping) -> None:
    """変更履歴 with its headers and a person's note on `row` (a log grown that far; the rows between
    are empty, which keeps the file small: the run appends below the last row with data)."""
    wb = openpyxl.load_workbook(path)
    ws = wb.create_sheet(mapping.tabs["changelog"].title)
    ws.append([c.header for c in mapping.tabs["changelog"].columns])
    ws.cell(row, 1, "ここまで保管済み")
    wb.save(path)


def with_dimension(src: Path, dst: Path, ref: str | None) -> Path:
    """A copy whose every sheet records `ref` as its dimension (None: no record at all), as some
    writers leave it; openpyxl always records the right one."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                record = b"" if ref is None else f'<dimension ref="{ref}"/>'.encode()
                data, n = re.subn(rb"<dimension [^>]*/>", record, data)
                assert n == 1
            new.writestr(item, data)
    return dst


@pytest.fixture(scope="session")
def mapping():
    return load_mapping()
