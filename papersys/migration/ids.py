"""arXiv ids as legacy datasets hold them: canonical, repairable, or beyond repair.

Legacy pipelines parsed new-style ids as floats, which loses trailing zeros of the number
(``2410.12850`` → ``2410.1285``) and the leading zero of the year-month (``0704.0001`` →
``704.0001``). The number's width is fixed by the month (4 digits up to 1412, 5 from 1501), so
padding restores the only id the float can have come from. The repair is ambiguous, and not
made, when the padded id is itself present undamaged in the same source: the damaged row may be
that paper or another one whose id was rounded, and nothing in the row can tell which.
Old-style ids (``hep-th/9901001``) are never touched.
"""

from __future__ import annotations

import re
from typing import Literal

IdStatus = Literal["ok", "repaired", "invalid"]

_OLD_STYLE = re.compile(r"^([a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")
_NEW_STYLE = re.compile(r"^(\d{4})\.(\d{4,5})(?:v\d+)?$")
_FLOAT_DAMAGED = re.compile(r"^(\d{3,4})\.(\d{1,5})$")
FIRST_NEW_STYLE_MONTH = 704  # April 2007
FIVE_DIGIT_FROM = 1501  # January 2015


def _number_width(yymm: int) -> int:
    return 4 if yymm < FIVE_DIGIT_FROM else 5


def _valid_month(yymm: str) -> bool:
    return 1 <= int(yymm[2:]) <= 12 and int(yymm) >= FIRST_NEW_STYLE_MONTH


def classify_id(raw: object) -> tuple[str | None, IdStatus]:
    """Return (versionless canonical id or repair candidate, status) for one legacy id value."""
    if raw is None:
        return None, "invalid"
    text = str(raw).strip()
    old = _OLD_STYLE.match(text)
    if old:
        return old.group(1), "ok"
    new = _NEW_STYLE.match(text)
    if new and _valid_month(new.group(1)):
        yymm, number = new.group(1), new.group(2)
        if len(number) == _number_width(int(yymm)):
            return f"{yymm}.{number}", "ok"
    damaged = _FLOAT_DAMAGED.match(text)
    if damaged:
        yymm = damaged.group(1).zfill(4)
        number = damaged.group(2)
        if _valid_month(yymm):
            width = _number_width(int(yymm))
            if len(number) <= width:
                return f"{yymm}.{number.ljust(width, '0')}", "repaired"
    return None, "invalid"


class IdResolver:
    """Resolves the ids of one source, knowing which ids it holds undamaged."""

    def __init__(self, undamaged: set[str]) -> None:
        self.undamaged = undamaged

    def resolve(self, raw: object) -> tuple[str | None, str | None]:
        """(canonical id or None, issue kind or None: repaired_id, ambiguous_id, invalid_id)."""
        canonical, status = classify_id(raw)
        if status == "ok":
            return canonical, None
        if status == "invalid":
            return None, "invalid_id"
        if canonical in self.undamaged:
            return None, "ambiguous_id"
        return canonical, "repaired_id"
