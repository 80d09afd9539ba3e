"""Page assembly for the report: escaped text, tables, inline PNG figures, a sticky table of contents.

The page needs nothing but itself: CSS is inline in ``<style>``, figures are ``data:image/png;base64`` URIs,
there is no script, and a Content-Security-Policy (``default-src 'none'; img-src data:; style-src
'unsafe-inline'``) makes the browser refuse any external resource, should one ever slip in. Every piece of
user data (class names, feature names, method labels, parameters) goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a;background:#f6f7f9;
line-height:1.5}
header.top{background:#1f3a5f;color:#fff;padding:1.2em 2em}
header.top h1{margin:0 0 .2em 0;font-size:1.6em}
header.top p{margin:0;opacity:.85;font-size:.9em}
.layout{display:flex;align-items:flex-start}
nav.toc{position:sticky;top:0;align-self:flex-start;width:13em;flex:none;padding:1em;max-height:100vh;
overflow-y:auto}
nav.toc ol{list-style:none;margin:0;padding:0}
nav.toc a{display:block;padding:.35em .6em;border-radius:.3em;color:#1f3a5f;text-decoration:none}
nav.toc a:hover,nav.toc a:focus{background:#dde6f2}
main{flex:1;min-width:0;padding:1em 2em 60vh 1em}
section{background:#fff;border-radius:.5em;padding:1em 1.5em;margin:0 0 1.2em 0;box-shadow:0 1px 3px #0002}
section h2{margin-top:.2em;color:#1f3a5f}
figure{margin:1em 0}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#555}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
.table-scroll{max-width:100%;overflow-x:auto}
th,td{border:1px solid #d5d9e0;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#17663a;font-weight:bold}
.fail{color:#a1261b;font-weight:bold}
.note{color:#555;font-size:.9em}
.summary p{max-width:60em}
code{background:#eef1f5;padding:0 .25em;border-radius:.2em}
"""


def esc(value: Any) -> str:
    """``str(value)`` HTML-escaped (quotes too): safe in text and attribute values."""
    return html.escape(str(value), quote=True)


def paragraph(text: str, css_class: str | None = None) -> str:
    """``<p>`` of escaped plain text."""
    attr = f' class="{esc(css_class)}"' if css_class else ""
    return f"<p{attr}>{esc(text)}</p>"


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes (checked to be PNG)."""
    if not isinstance(data, (bytes, bytearray)) or not bytes(data).startswith(PNG_SIGNATURE):
        raise ValidationError("lumos.report: a figure must be PNG bytes (Display.to_bytes('png'))")
    return "data:image/png;base64," + base64.b64encode(bytes(data)).decode("ascii")


def figure(display: Any, alt: str, caption: str | None = None, *, dpi: float = 100) -> str:
    """A ``<figure>`` with the display drawn to an inline PNG; the matplotlib figure is released after."""
    data = display.to_bytes("png", dpi=dpi)
    fig = getattr(display, "figure_", None)
    if fig is not None:
        fig.clear()
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{png_data_uri(data)}" alt="{esc(alt)}">{cap}</figure>'


def cell(value: Any) -> str:
    """A ``<td>``: numbers right-aligned with 4 significant digits, booleans as pass/fail, text escaped."""
    if isinstance(value, bool):
        return f'<td class="{"pass" if value else "fail"}">{"pass" if value else "FAIL"}</td>'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = "n/a" if value != value else (f"{value:.4g}" if isinstance(value, float) else str(value))
        return f'<td class="num">{text}</td>'
    return f"<td>{esc(value)}</td>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, css_class: str | None = None) -> str:
    """An HTML table; cells go through :func:`cell` (pre-rendered ``RawHTML`` is kept as is)."""
    attr = f' class="{esc(css_class)}"' if css_class else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(c.td() if isinstance(c, RawHTML) else cell(c) for c in row) + "</tr>"
                   for row in rows)
    # wide tables (e.g. a 17 x 17 agreement matrix) scroll inside their box instead of widening the page
    return f'<div class="table-scroll"><table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


@dataclass(frozen=True)
class RawHTML:
    """Markup built by this package (already escaped), to put in a table cell as is."""

    markup: str

    def td(self) -> str:
        return f"<td>{self.markup}</td>"


@dataclass
class Section:
    """One section of the page: its anchor ``id``, heading and body markup."""

    id: str
    title: str
    body: str

    def render(self) -> str:
        return f'<section id="{esc(self.id)}"><h2>{esc(self.title)}</h2>{self.body}</section>'


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole HTML document: header, sticky table of contents linking each section, the sections."""
    links = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(s.render() for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>'
        f'<div class="layout"><nav class="toc" aria-label="Contents"><ol>{links}</ol></nav>'
        f"<main>{body}</main></div></body></html>\n"
    )
