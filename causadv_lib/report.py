"""Results JSON, tables (CSV + Markdown) and figures (PNG + PDF) of one notebook run.

A notebook records its numbers in a `Report`; every table is written from those recorded rows, and
`save()` writes the results JSON. Files are written atomically (temp file + rename), so a failed run
never leaves a half-written result. Nothing here depends on timings, dates or memory addresses: two runs
with the same inputs write byte-identical JSON, CSV and Markdown.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import __version__, config
from .io import atomic_write_bytes, plain_name, to_jsonable
from .text import markdown_text


def markdown_table(rows: Sequence[dict], columns: Sequence[str], caption: str | None = None) -> str:
    """A GitHub-flavoured Markdown table of `rows` (dicts) restricted to `columns`; every header, cell and the
    caption go through `text.markdown_text` (shown as they are, never as markup)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"
        return markdown_text(v)

    lines = []
    if caption:
        lines += [f"**{markdown_text(caption)}**", ""]
    lines.append("| " + " | ".join(markdown_text(c) for c in columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


#: the display-metadata key under which `Report.figure` names the figure it shows:
#: ``{"causadv": {"figure": NAME}}`` on the image output (the web page places NAME.png there)
DISPLAY_KEY = "causadv"


def figure_display(png: bytes, name: str) -> tuple[dict, dict]:
    """(data, metadata) of the output that shows figure `name`: its PNG bytes, tagged with its name."""
    data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": f"<figure {name}>"}
    return data, {DISPLAY_KEY: {"figure": name}}


def displayed_figure(output: dict) -> str | None:
    """The figure name a notebook output carries (see `figure_display`), or None for any other output."""
    tag = (output.get("metadata") or {}).get(DISPLAY_KEY)
    name = tag.get("figure") if isinstance(tag, dict) else None
    return name if isinstance(name, str) else None


def _ipython_shell():
    """The running IPython shell, or None. IPython is not imported here: where it was never imported, no shell
    runs (and the library does not depend on it)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _show(png: bytes, name: str) -> None:
    """Display the figure as one image output tagged with its name, when running under IPython."""
    if _ipython_shell() is None:
        return
    # local import: IPython is optional (present under a kernel, not a dependency of the library); here it is
    # already loaded, since a shell runs
    from IPython.display import display

    data, metadata = figure_display(png, name)
    display(data, raw=True, metadata=metadata)


class Report:
    """Collects one notebook's results and writes them under `config.output_dir(profile, out_dir)`."""

    def __init__(self, notebook: str, profile: str, out_dir: Path | None = None):
        config.get_profile(profile)  # validates the name
        self.notebook = plain_name(notebook, "notebook name")
        self.profile = profile
        self.out_dir = config.output_dir(profile, out_dir)
        self.results: dict[str, Any] = {
            "notebook": notebook,
            "profile": profile,
            "causadv_version": __version__,
            "seed": config.SEED,
            "values": {},
            "tables": {},
            "figures": [],
        }

    def record(self, key: str, value: Any) -> Any:
        """Store a named value (anything JSON-able after numpy conversion); returns it."""
        self.results["values"][key] = to_jsonable(value)
        return value

    def table(self, name: str, rows: Iterable[dict], columns: Sequence[str] | None = None,
              caption: str | None = None) -> str:
        """Record `rows` under `name` and write NAME.csv and NAME.md; returns the Markdown."""
        plain_name(name, "table name")
        rows = [to_jsonable(dict(r)) for r in rows]
        columns = list(columns) if columns is not None else list(rows[0]) if rows else []
        self.results["tables"][name] = {"columns": columns, "rows": rows, "caption": caption}
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.out_dir / f"{name}.csv", buf.getvalue().encode())
        md = markdown_table(rows, columns, caption)
        atomic_write_bytes(self.out_dir / f"{name}.md", md.encode())
        return md

    def side_table(self, name: str, rows: Iterable[dict], columns: Sequence[str], caption: str | None = None) -> str:
        """Write NAME.md only, kept out of the results JSON (e.g. run times, which are not reproducible)."""
        plain_name(name, "table name")
        md = markdown_table(list(rows), columns, caption)
        atomic_write_bytes(self.out_dir / f"{name}.md", md.encode())
        return md

    def figure(self, fig, name: str, dpi: int = 150) -> list[Path]:
        """Save a matplotlib figure as NAME.png and NAME.pdf (no dates in the metadata) and, under IPython,
        display it: one image output (the PNG just written) whose display metadata names it
        (`figure_display`), where the web page places the figure. A notebook calls no ``plt.show()`` after it."""
        plain_name(name, "figure name")
        paths, files = [], {}
        for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight", metadata=meta)
            files[ext] = buf.getvalue()
            path = self.out_dir / f"{name}.{ext}"
            atomic_write_bytes(path, files[ext])
            paths.append(path)
        if name not in self.results["figures"]:
            self.results["figures"].append(name)
        _show(files["png"], name)
        return paths

    @property
    def json_path(self) -> Path:
        return self.out_dir / f"{self.notebook}.json"

    def save(self) -> Path:
        """Write the results JSON (sorted keys, stable formatting); returns its path."""
        text = json.dumps(self.results, indent=1, sort_keys=True, allow_nan=False) + "\n"
        atomic_write_bytes(self.json_path, text.encode())
        return self.json_path
