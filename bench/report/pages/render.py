"""Write report.md and a self-contained report.html from the same sections.

Everything that comes from MLflow (names, params, tags) is escaped in the HTML. The layout
serves a reader who opens the page to get an answer: verdict boxes first, tables that scroll
inside their own box (saying so) where they are wider than the screen, their first column in
place on a phone, commands that wrap only at spaces, and the secondary sections
(`appendix=True`) collapsed under one heading at the end."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report.pages.fmt import cell


@dataclass
class Box:
    """A highlighted block of verdict lines under a small heading (one per preset)."""

    title: str
    lines: list[str]


@dataclass
class Table:
    df: pd.DataFrame
    caption: str = ""


@dataclass
class Code:
    """Commands a reader copies: monospace, one per line, never broken inside a token."""

    lines: list[str]


class Note(str):
    """Small print: how to read what stands above it."""


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs / bullet lines
    tables: list[pd.DataFrame | Table] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    blocks: list[Box | Table | Code | str] = field(default_factory=list)  # after the text
    notes: list[str] = field(default_factory=list)  # small print after everything else
    appendix: bool = False  # collapsed at the end of the HTML, under "Appendix" in markdown
    css_id: str = ""

    def parts(self) -> list:
        """Text, blocks, tables, images, in the order both formats write them."""
        tables = [t if isinstance(t, Table) else Table(t) for t in self.tables]
        return [*self.text, *self.blocks, *tables, *self.images, *map(Note, self.notes)]


TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # what a Markdown viewer would take for HTML


def md_text(text: str) -> str:
    """Text from MLflow (names, params) as Markdown shows it literally: a `<tag` never becomes
    HTML. Our own `p < 0.001` is left as it is."""
    return TAG_START.sub("&lt;", str(text))


def markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, its cells in human formats."""
    cells = lambda row: "| " + " | ".join(md_text(cell(v)).replace("|", "\\|") for v in row) + " |"  # noqa: E731
    lines = [cells(df.columns), "|" + "---|" * len(df.columns)]
    return "\n".join(lines + [cells(r) for r in df.itertuples(index=False)])


def _markdown_part(part) -> str | None:
    if isinstance(part, str):
        return md_text(part)
    if isinstance(part, Box):
        lines = "\n".join(f"- {md_text(line)}" for line in part.lines)
        return f"**{md_text(part.title)}**\n\n" + lines
    if isinstance(part, Table):
        if part.df.empty:
            return None
        caption = f"*{md_text(part.caption)}*\n\n" if part.caption else ""
        return caption + markdown_table(part.df)
    if isinstance(part, Code):
        return "```bash\n" + "\n".join(part.lines) + "\n```"
    return f"![{part.stem}]({part.name})"


def write_markdown(title: str, sections: list[Section], path: Path) -> None:
    """report.md: the main sections, then the appendix under its own heading."""
    parts = [f"# {md_text(title)}"]
    main = [s for s in sections if not s.appendix]
    appendix = [s for s in sections if s.appendix]
    for level, group in (("##", main), ("###", appendix)):
        if level == "###" and group:
            parts.append("## Appendix")
        for s in group:
            parts.append(f"{level} {md_text(s.title)}")
            parts += [p for p in map(_markdown_part, s.parts()) if p is not None]
    path.write_text("\n\n".join(parts) + "\n")


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:auto;
 padding:0 1em 2em;line-height:1.4;color:#1b1b1b}
h1{font-size:1.5em;margin:.6em 0 .3em}h2{font-size:1.25em;margin:1.2em 0 .4em}
h3{font-size:1.05em;margin:.8em 0 .3em}p{margin:.3em 0}
.meta{font-size:90%;color:#333}.meta p{margin:.15em 0}
.note{font-size:88%;color:#444}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4em 0;font-size:90%}
caption{text-align:left;font-weight:600;padding:.2em 0;caption-side:top}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;white-space:nowrap}th{background:#f3f3f3}
.scroll.wide::before{content:"scroll sideways for more columns \\2192";display:block;
 font-size:80%;color:#666}
pre.cmd{white-space:pre-wrap;overflow-wrap:normal;word-break:keep-all;overflow-x:auto;
 background:#f6f8fa;border:1px solid #e1e4e8;padding:.4em .6em;margin:.3em 0;font-size:85%}
pre.cmd span{white-space:nowrap}
.verdicts{display:flex;flex-wrap:wrap;gap:.6em}
.verdict{border-left:5px solid #2b7a3d;background:#eef7f0;padding:.4em .9em;flex:1 1 420px}
.verdict h3{margin:.2em 0}.verdict ul{margin:.2em 0;padding-left:1.2em}
img{max-width:100%;height:auto;display:block;margin:.4em 0}
details{border:1px solid #ddd;border-radius:4px;padding:.3em .7em;margin:.4em 0}
summary{cursor:pointer;font-weight:600}
@media (max-width:600px){body{padding:0 .4em 1em}
 td,th,td.num{white-space:normal;padding:2px 4px}
 td:first-child,th:first-child{position:sticky;left:0;background:#fff}th:first-child{background:#f3f3f3}}
"""

# marks each table box that is wider than the screen, so that it says it scrolls (CSS alone
# cannot tell a table that overflows from one that fits)
MARK_WIDE = """<script>function markWide(){document.querySelectorAll('.scroll').forEach(
d=>d.classList.toggle('wide',d.scrollWidth>d.clientWidth+1))}
markWide();addEventListener('load',markWide);addEventListener('resize',markWide);
addEventListener('toggle',markWide,true)</script>"""  # toggle: an appendix opened


NUMERIC = re.compile(r"^[-+<±]?\d")


def _td(text: str) -> str:
    """Numbers right-aligned (their digits line up), words left-aligned."""
    align = " class='num'" if NUMERIC.match(text) else ""
    return f"<td{align}>{html.escape(text)}</td>"


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.df.columns)
    body = "".join(
        "<tr>" + "".join(_td(cell(v)) for v in r) + "</tr>" for r in t.df.itertuples(index=False)
    )
    caption = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return (
        f"<div class='scroll'><table>{caption}<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _tokens(line: str) -> str:
    """Each space-separated token unbreakable: a command wraps at its spaces only (a browser
    would also break after '/' or '-' inside a path or an override)."""
    return " ".join(f"<span>{html.escape(token)}</span>" for token in line.split(" "))


def _html_part(part) -> str | None:
    if isinstance(part, Note):
        return f"<p class='note'>{html.escape(part)}</p>"
    if isinstance(part, str):
        return f"<p>{html.escape(part)}</p>"
    if isinstance(part, Box):
        items = "".join(f"<li>{html.escape(line)}</li>" for line in part.lines)
        return f"<div class='verdict'><h3>{html.escape(part.title)}</h3><ul>{items}</ul></div>"
    if isinstance(part, Table):
        return _html_table(part) if not part.df.empty else None
    if isinstance(part, Code):
        return "".join(f"<pre class='cmd'>{_tokens(line)}</pre>" for line in part.lines)
    data = base64.b64encode(part.read_bytes()).decode()
    return f"<img alt='{html.escape(part.stem)}' src='data:image/png;base64,{data}'>"


def _html_section(s: Section) -> str:
    parts = [p for p in map(_html_part, s.parts()) if p is not None]
    boxes = [p for p in parts if p.startswith("<div class='verdict'>")]
    if boxes:  # the boxes of one section sit side by side where the screen is wide enough
        first = parts.index(boxes[0])
        rest = [p for p in parts if p not in boxes]
        parts = rest[:first] + ["<div class='verdicts'>" + "".join(boxes) + "</div>"]
        parts += rest[first:]
    ident = f" id='{html.escape(s.css_id)}'" if s.css_id else ""
    body = "\n".join(parts)
    if s.appendix:
        return f"<details{ident}><summary>{html.escape(s.title)}</summary>\n{body}\n</details>"
    if s.css_id == "header":  # the facts under the title: no heading of their own
        return f"<header{ident} class='meta'>\n{body}\n</header>"
    return f"<section{ident}><h2>{html.escape(s.title)}</h2>\n{body}\n</section>"


def write_html(title: str, sections: list[Section], path: Path) -> None:
    """report.html, self-contained: the figures embedded, the appendix collapsed."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
    ]
    parts += [_html_section(s) for s in sections if not s.appendix]
    appendix = [_html_section(s) for s in sections if s.appendix]
    if appendix:
        parts.append("<section id='appendix'><h2>Appendix</h2>\n" + "\n".join(appendix))
        parts.append("</section>")
    parts.append(MARK_WIDE + "</body></html>")
    path.write_text("\n".join(parts))
