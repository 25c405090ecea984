"""The evaluation report of a run, and its HTML opened in a real headless browser (Chromium).

The browser comes from ``scripts/ensure_chromium.sh`` (Debian's ``chromium``,
installed with apt-get when that is usable); without one the browser test is
skipped and says why.
"""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from tfigkd.testing import ROOT

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

# Injected into a copy of the page: a Content-Security-Policy that allows only inline
# style, the probe itself and data: images (anything else is blocked and reported),
# and a probe that writes what the page loaded into the DOM for --dump-dom.
CSP = ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
       'img-src data:; style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">')
PROBE = """<script>
var violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  violations.push(e.blockedURI || e.violatedDirective); });
// Written synchronously in the load handler: --dump-dom waits for load, but not for
// promises that resolve later (image decode() ran on a thread that a loaded CI machine
// left unfinished when the DOM was dumped, so the probe was missing). Whole-image bytes
// are checked with PIL below instead.
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {images: imgs.length,
             loaded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
             widths: imgs.map(function (i) { return i.naturalWidth; }),
             resources: performance.getEntriesByType('resource').map(function (e) { return e.name; }),
             violations: violations, tables: document.querySelectorAll('table').length,
             h1: (document.querySelector('h1') || {}).textContent};
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="session")
def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "ensure_chromium.sh")],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.skip("no headless browser: scripts/ensure_chromium.sh could not install Debian's "
                    f"chromium ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'no reason given'})")
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def report_dir(trained_tiny, tmp_path_factory):
    """A run folder with report.md / report.html made by the evaluation code on real models.

    The tiny model plays the teacher (fed as trained) and the student (fed pixels / 255,
    which it was not trained on), so the two disagree and every section has content.
    """
    import keras

    from tfigkd.evaluation import evaluate_run, evaluation_lines, write_html

    cfg, splits, model_path = trained_tiny
    out = str(tmp_path_factory.mktemp("report"))
    teacher = keras.models.load_model(model_path)
    ev = evaluate_run(cfg, out, splits, teacher, model_path, model_path)
    summary = {"teacher": {"trainable_params": 1000, "macs": 50_000}, "int8": None,
               "deploy": None}
    best = {"name": "kd-s0", "trainable_params": 100, "macs": 5_000}
    lines = ["# tiny: results", ""] + evaluation_lines(ev, summary, best, out)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    write_html(out)
    return out, ev, splits


def test_evaluation_figures_match_the_models(report_dir):
    import keras

    from tfigkd.data import normalize

    out, ev, splits = report_dir
    saved = json.load(open(os.path.join(out, "evaluation.json")))
    assert saved["teacher"]["accuracy"] == pytest.approx(ev["teacher"]["accuracy"])
    # Recompute the teacher's predictions independently of make_dataset.
    model = keras.models.load_model(ev["teacher_path"])
    x = normalize(splits.test.x, "dataset", splits.mean, splits.std).numpy()
    pred = model.predict(x, verbose=0).argmax(1)
    assert ev["teacher"]["accuracy"] == pytest.approx(float((pred == splits.test.y).mean()))
    cm = np.array(ev["teacher"]["confusion"])
    assert cm.sum() == len(splits.test) and np.trace(cm) == int((pred == splits.test.y).sum())
    a = ev["agreement"]
    assert sum(a[k] for k in ("both_right", "teacher_only", "student_only", "both_wrong")) == \
        len(splits.test)
    assert a["teacher_only"] > 0  # the mis-fed "student" loses images: the gallery has content
    for png in ("confusion.png", "student_regressions.png"):
        assert os.path.getsize(os.path.join(out, "plots", png)) > 1000


def test_the_html_report_renders_in_chromium_with_every_image_and_no_request(report_dir,
                                                                           chromium, tmp_path):
    out = report_dir[0]
    page = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    n_data = len(re.findall(r'<img [^>]*src="data:image/png;base64,', page))
    assert n_data >= 3  # confusion matrices, confused pairs, student-vs-teacher gallery
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.replace("<head>", "<head>" + CSP, 1)
                          .replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    flags = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    # A browser that crashes or stalls on a loaded machine gets two more tries; a page
    # that never runs the probe fails all three.
    for _ in range(3):
        r = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom",
                            probe_page.as_uri()], capture_output=True, text=True, timeout=120)
        m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
        if m:
            break
    assert m, (f"the probe did not run (exit {r.returncode}; stdout ends "
               f"{r.stdout[-300:]!r}): {r.stderr[-1500:]}")
    import html as html_lib

    probe = json.loads(html_lib.unescape(m.group(1)))
    assert probe["images"] == n_data and probe["loaded"] == n_data, probe
    assert min(probe["widths"]) > 0
    # Chromium shows a truncated PNG as far as it goes; the embedded bytes must be whole
    # images, of the widths the browser saw.
    import base64
    import io

    from PIL import Image

    widths = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            im.load()  # raises on a truncated or damaged file
            widths.append(im.size[0])
    assert widths == probe["widths"]
    assert probe["resources"] == [] and probe["violations"] == [], probe
    assert probe["tables"] >= 3 and probe["h1"] == "tiny: results"
    # The unmodified file renders to a non-blank screenshot.
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,1400",
                    f"file://{os.path.join(out, 'report.html')}"],
                   capture_output=True, text=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert img.shape == (1400, 1000) and img.std() > 5
