"""Write report.md and a self-contained report.html from the same sections.

Everything that comes from MLflow (names, params, tags) is escaped in the HTML."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs / bullet lines
    tables: list[pd.DataFrame] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return str(value)


def markdown_table(df: pd.DataFrame) -> str:
    cells = lambda row: "| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |"  # noqa: E731
    lines = [cells(df.columns), "|" + "---|" * len(df.columns)]
    return "\n".join(lines + [cells(r) for r in df.itertuples(index=False)])


def html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
        for r in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_markdown(title: str, sections: list[Section], path: Path) -> None:
    parts = [f"# {title}"]
    for s in sections:
        parts.append(f"## {s.title}")
        parts += s.text
        parts += [markdown_table(t) for t in s.tables if not t.empty]
        parts += [f"![{img.stem}]({img.name})" for img in s.images]
    path.write_text("\n\n".join(parts) + "\n")


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "th{background:#f3f3f3}img{max-width:100%}"
)


def write_html(title: str, sections: list[Section], path: Path) -> None:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        parts += [html_table(t) for t in s.tables if not t.empty]
        for img in s.images:
            data = base64.b64encode(img.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(img.stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
