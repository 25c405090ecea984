import base64
import re

import numpy as np
from PIL import Image

from tfigkd.evaluation.html import markdown_to_html, write_html


def test_images_are_embedded_and_nothing_points_outside(tmp_path):
    (tmp_path / "plots").mkdir()
    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(tmp_path / "plots" / "a.png")
    md = ("# Run <x>: results\n\nSome **bold** and `code` & a [link](https://example.com).\n\n"
          "| model | acc |\n|---|---|\n| teacher | 0.9 |\n| student `s` | 0.8 |\n\n"
          "![plot a](plots/a.png)\n\n![gone](plots/missing.png)\n\n- a bullet\n")
    (tmp_path / "report.md").write_text(md)
    page = open(write_html(str(tmp_path))).read()
    assert "<title>Run &lt;x&gt;: results</title>" in page
    assert "<h1>Run &lt;x&gt;: results</h1>" in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page and "&amp;" in page
    assert "<th>model</th>" in page and "<td>student <code>s</code></td>" in page
    assert page.count("<tr>") == 3  # header + 2 rows; the |---| line is not a row
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) == 1 and srcs[0].startswith("data:image/png;base64,")
    png = base64.b64decode(srcs[0].split(",", 1)[1])
    assert png == (tmp_path / "plots" / "a.png").read_bytes()
    assert "image not available: plots/missing.png" in page
    # No URL the browser could fetch: no http(s) anywhere, no external stylesheet or script.
    assert "http" not in page.replace("https://example.com", "") and "example.com" not in page
    assert "<script" not in page and "<link" not in page


def test_headings_tables_and_paragraphs_of_a_real_report():
    page = markdown_to_html("## A\n\nline one\nline two\n\n### B\n| x |\n|---|\n| 1 |\n", ".")
    assert "<h2>A</h2>" in page and "<p>line one line two</p>" in page
    assert "<h3>B</h3>" in page and "<td>1</td>" in page
