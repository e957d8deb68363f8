"""HTML building blocks for the scaling report: one self-contained page that references PNGs beside it."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.headline { font-size: 1.15em; background: #f3f6fa; border-left: 4px solid #3a6ea5; padding: .6em 1em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
table { border-collapse: collapse; font-size: .85em; } td, th { border: 1px solid #ddd; padding: .25em .5em; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: .9em; color: #555; }
.note { color: #8a5a00; } img.sample { max-width: 256px; image-rendering: pixelated; }
"""


@dataclass(frozen=True)
class Section:
    title: str
    body: str
    """HTML."""


def page(title: str, headline: str, subtitle: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(subtitle)}</p>",
        f'<p class="headline">{html.escape(headline)}</p>',
    ]
    for section in sections:
        parts += [f"<h2>{html.escape(section.title)}</h2>", section.body]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def figure(image: Path | None, caption: str, missing: str) -> str:
    """The image (by file name, relative to the page) with its caption, or a note saying why there is none."""
    if image is None:
        return note(missing)
    return f'<figure><img src="{html.escape(image.name)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def preformatted(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def bullet_list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def table(frame: pd.DataFrame, text_columns: tuple[str, ...] = ()) -> str:
    """A table with numbers to 4 significant digits and '-' for missing values."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            css = ' class="text"' if column in text_columns or isinstance(value, str) else ""
            cells.append(f"<td{css}>{html.escape(_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image_grid(rows: list[tuple[str, list[tuple[str | None, str]]]], column_titles: list[str]) -> str:
    """A grid of images: each row is (label, [(image src or None, caption) ...]) under ``column_titles``."""
    head = "<th></th>" + "".join(f"<th>{html.escape(t)}</th>" for t in column_titles)
    body = []
    for label, cells in rows:
        tds = []
        for src, caption in cells:
            if src is None:
                tds.append("<td>-</td>")
            else:
                tds.append(f'<td><img class="sample" src="{html.escape(src)}" alt="{html.escape(caption)}"><br>{html.escape(caption)}</td>')
        body.append(f'<tr><td class="text">{html.escape(label)}</td>{"".join(tds)}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f"{float(value):.4g}" if np.isfinite(value) else "-"
    return "-" if value is None else str(value)
