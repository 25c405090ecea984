"""A person-readable evaluation of a run: ``report.md``'s evaluation sections and ``report.html``.

- ``metrics``: predictions of the teacher and the student on the test split,
  accuracy, per-class precision/recall/F1, confusion matrices, confused
  pairs, and where the two disagree.
- ``plots``: the confusion matrices and example-image grids (PNG).
- ``html``: ``report.md`` as one self-contained HTML file (inline CSS, PNGs
  as data URIs, no external request).
- ``report``: what ``tfigkd run`` (and so ``tfigkd distill``) calls.
"""

from tfigkd.evaluation.html import markdown_to_html, write_html
from tfigkd.evaluation.report import evaluate_run, evaluation_lines

__all__ = ["evaluate_run", "evaluation_lines", "markdown_to_html", "write_html"]
