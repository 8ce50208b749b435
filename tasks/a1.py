"""A1 notation, the way staff and the Sheets API name cells."""

from openpyxl.utils import get_column_letter


def a1(row: int, col: int) -> str:
    """1-based row and column to "B7"."""
    return f"{get_column_letter(col)}{row}"

