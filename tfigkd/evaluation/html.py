"""``report.md`` as one self-contained HTML file.

The Markdown the reports write is a small subset (headings, paragraphs,
pipe tables, ``**bold**``, `` `code` ``, images on their own line), so it is
converted here rather than with a Markdown package: every image becomes a
``data:image/png;base64`` URI, the CSS is inline, and links become plain text,
so opening the file makes no request at all (``report_browser_test.py``
checks this in headless Chromium).
"""

from __future__ import annotations

import base64
import html
import os
import re

from tfigkd.io import write_text
from tfigkd.layout import REPORT_HTML, REPORT_MD

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h2{font-size:1.3em;margin-top:1.6em;border-bottom:1px solid #eee}
h3{font-size:1.1em;margin-top:1.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f5f7}tr:nth-child(even) td{background:#fafafa}
code{background:#f1f1f1;padding:0 .25em;border-radius:3px;font-size:.92em}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.missing{color:#a00}
"""

_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")


def _inline(text):
    """Escapes HTML, then renders **bold**, `code` and [text](url) (as plain text)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", out)


def _image(alt, src, base_dir):
    path = src if os.path.isabs(src) else os.path.join(base_dir, src)
    if src.startswith(("http:", "https:", "//")) or not os.path.isfile(path):
        return f'<p class="missing">[image not available: {html.escape(src)}]</p>'
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    mime = "image/png" if path.lower().endswith(".png") else "image/jpeg"
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _table(lines):
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    head, body = cells[0], [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body]
    return "\n".join(out + ["</table>"])


def markdown_to_html(text, base_dir, title="tfigkd report"):
    """Converts the reports' Markdown to a self-contained HTML page.

    Args:
        text: Markdown (the subset above).
        base_dir: Folder relative image paths are resolved against.
        title: The page title.

    Returns:
        The HTML document as a string.
    """
    lines = text.splitlines()
    out, para, i = [], [], 0

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        ln = lines[i].rstrip()
        m = _IMAGE.match(ln.strip())
        if not ln.strip():
            flush()
        elif ln.startswith("#"):
            flush()
            level = min(len(ln) - len(ln.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(ln[level:].strip())}</h{level}>")
        elif ln.lstrip().startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table(block))
            continue
        elif m:
            flush()
            out.append(_image(m.group(1), m.group(2), base_dir))
        elif ln.lstrip().startswith(("- ", "* ")):
            flush()
            out.append(f"<ul><li>{_inline(ln.lstrip()[2:])}</li></ul>")
        else:
            para.append(ln.strip())
        i += 1
    flush()
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(out) + "\n</body></html>\n")


def write_html(out_dir, title=None):
    """Writes ``out_dir/report.html`` from ``out_dir/report.md``; returns its path."""
    with open(os.path.join(out_dir, REPORT_MD), encoding="utf-8") as f:
        text = f.read()
    first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")
    path = os.path.join(out_dir, REPORT_HTML)
    write_text(path, markdown_to_html(text, out_dir, title or first or "tfigkd report"))
    return path
