"""Numbers as prose and table cells: the one formatting of estimates, shares and intervals."""
from __future__ import annotations


def num(x, nd: int = 2) -> str:
    """A number for prose and tables: ``nd`` decimals, "n/a" for None or NaN."""
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"  # x != x: NaN of any float type


def percent(v) -> str:
    """A fraction as a whole percentage ("n/a" for None)."""
    return "n/a" if v is None else f"{100 * v:.0f}%"


def interval(row: dict, key: str, nd: int = 2) -> str:
    """``row[key] [row[key_lo], row[key_hi]]``: an estimate with its interval."""
    return f"{num(row[key], nd)} [{num(row[key + '_lo'], nd)}, {num(row[key + '_hi'], nd)}]"


def markdown_text(value) -> str:
    """`value` as text that Markdown (and the HTML it becomes) shows as it is, the one escaping rule of every
    rendered table cell, header and caption: ``&`` and ``<`` become entities, so no tag, comment or entity can
    form from data (a class name ``<img src=x onerror=...>`` shows as those characters); ``|`` is escaped so
    it cannot split a table row; line breaks become spaces, so a cell cannot end its row."""
    s = "" if value is None else str(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")
    return " ".join(s.splitlines()) if ("\n" in s or "\r" in s) else s
