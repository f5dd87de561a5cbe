"""A side-by-side diff of two schema versions, as data for a template to render.

The console used ``difflib.HtmlDiff``, whose table the template had to mark ``|safe``.
HtmlDiff escapes the lines but not the column headers, and the headers held the versions
from the query string: one link ran script in the console's origin (issue 24). Here the
diff is plain data (line numbers, text, kind), and the template escapes every value like
any other. No markup comes from outside the template.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from itertools import zip_longest

#: Kind of a row -> the CSS class the console's stylesheet colours it with.
KINDS = {"equal": "", "replace": "diff_chg", "delete": "diff_sub", "insert": "diff_add"}


@dataclass(frozen=True)
class Row:
    """One line of each side; a side is ``None`` where the other side has a line it lacks."""

    left_no: int | None
    left: str | None
    right_no: int | None
    right: str | None
    kind: str

    @property
    def css(self) -> str:
        return KINDS[self.kind]


def side_by_side(left: list[str], right: list[str], context: int | None = 4) -> list[list[Row]]:
    """Hunks of rows: every line when ``context`` is None, else each change with that many
    unchanged lines around it (two versions that are equal then give one short hunk)."""
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    groups = [matcher.get_opcodes()] if context is None else list(matcher.get_grouped_opcodes(context))
    hunks = []
    for group in groups:
        rows: list[Row] = []
        for kind, i1, i2, j1, j2 in group:
            pairs = zip_longest(range(i1, i2), range(j1, j2))
            for i, j in pairs:
                rows.append(
                    Row(
                        left_no=None if i is None else i + 1,
                        left=None if i is None else left[i],
                        right_no=None if j is None else j + 1,
                        right=None if j is None else right[j],
                        kind=kind,
                    )
                )
        hunks.append(rows)
    return hunks
