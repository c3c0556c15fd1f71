"""The HTML reports of real stored records, opened in headless Chromium with the network cut.

Records: one `twinrun train` (torch, tiny preset, its page written by `--report`),
one small real study of each kind (a variance study over init and all, and a 2-fold CV, each run
one epoch on 200 images, compared with each other), one DIVERGED `twinrun check` of
a tiny torch script whose replica 1 drifts from step 8 on (localised to a layer named
`<script>alert(1)</script>`, checked with the argument `"><img src=x onerror=alert(1)>`), and
a run recorded through the store API whose every name is HTML. Each page must render with no
console error, every plot drawn, no request leaving the file, and no dialog opening.

Chromium is Debian's (`scripts/get-chromium.sh`, run by `make setup`), driven by Playwright's
Python package pointed at its executable. Without either the tests skip, except under CI=true.
Screenshots go to the test's tmp folder, and to $TWINRUN_SCREENSHOTS when it is set.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import requires_data, run_cli, skip_unless_ci
from test_report import ATTRIBUTE_BREAK, SCRIPT_TAG, record_hostile_run

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "scripts" / "torch_html_names.py"
PAGE_SECTIONS = {
    "run": ["Summary", "Learning curves", "Test metrics", "Determinism", "Environment"],
    "check": ["Verdict", "Replicas", "Loss per step", "Divergence growth", "First divergence",
              "Environment differences"],
    "study": ["Distributions by source", "Variance by source", "Prediction disagreement",
              "Statistics", "Runs"],
    "cv": ["Folds", "Fold table", "Runs"],
    "compare": ["Verdict", "A against B", "Is the difference more than seed noise?"],
}
# The cheapest real studies with every plot: the tiny preset, 10 steps a run, two at a time
# (one's start-up overlaps the other's training).
SMALL_STUDY = ["--preset", "tiny", "--backend", "torch",
               "--threads", "1", "--jobs", "2"]


def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _unavailable(reason):
    skip_unless_ci(f"{reason} (`make setup` installs Chromium and Playwright)")


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[test]').")
    executable = _chromium()
    if executable is None:
        _unavailable("Chromium is not installed (scripts/get-chromium.sh installs it).")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable,
                                             args=["--headless=new", "--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("report-store")


@pytest.fixture(scope="session")
def diverged_check(store):
    # Two replicas with different thread counts (an environment difference to show), each to
    # its end (--no-lockstep) so the divergence has room to grow.
    completed = run_cli("check", "-n", "2", "--threads", "1,2", "--no-lockstep", "--json",
                        "--store", store, "--", "python", SCRIPT, "--tag", ATTRIBUTE_BREAK)
    assert completed.returncode == 1, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert verdict["first_divergence"]["layer"]["name"] == SCRIPT_TAG
    checks = run_cli("checks", "--store", store, "--json")
    return json.loads(checks.stdout)[0]["check_id"]


@pytest.fixture(scope="session")
def trained_run(store):
    page = store / "train-report.html"
    completed = run_cli("train", "--preset", "tiny", "--backend", "torch", "--threads", "1",
                        "--store", store, "--json", "--report", page)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run_id = json.loads(completed.stdout)["run_id"]  # --report leaves stdout one JSON object
    assert f"Wrote the html report of {run_id} to {page}." in completed.stderr
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    return run_id


@pytest.fixture(scope="session")
def small_studies(store):
    """A variance study over init and all (2 runs each) and a 2-fold CV, run for real."""
    page = store / "variance-report.html"
    variance = run_cli("variance", "--runs", "2", "--vary", "init,all", *SMALL_STUDY,
                       "--store", store, "--report", page)
    assert variance.returncode == 0, variance.stderr[-3000:]
    assert "Wrote the html report of variance-" in variance.stdout
    cv = run_cli("cv", "--folds", "2", *SMALL_STUDY, "--store", store)
    assert cv.returncode == 0, cv.stderr[-3000:]
    hint = cv.stdout.rstrip().splitlines()[-1]
    assert hint.startswith("Report: twinrun report cv-"), cv.stdout
    studies = {s["kind"]: s["study_id"] for s in
               json.loads(run_cli("studies", "--store", store, "--json").stdout)}
    assert page.read_text(encoding="utf-8") == write_report(
        store, studies["variance"], store).read_text(encoding="utf-8")
    return studies


@pytest.fixture(scope="session")
def hostile_run(store):
    return record_hostile_run(store)


def write_report(store, record_id, folder, fmt="html", against=None):
    out = Path(folder) / f"{record_id}.{fmt}"
    extra = ["--against", against] if against else []
    completed = run_cli("report", record_id, *extra, "--store", store, "--format", fmt,
                        "-o", out)
    assert completed.returncode == 0, completed.stderr
    text = out.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text, f"a URL in {out}"
    return out


def open_offline(browser, path, screenshot, width=1280):
    """Open `path` with every http(s) request aborted; return the page and what happened."""
    seen = {"console_errors": [], "page_errors": [], "dialogs": [], "requests": []}
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("http://", "https://")):
            seen["requests"].append(url)
            request_route.abort()
        else:
            request_route.continue_()

    page.route("**/*", route)
    page.on("console", lambda message: message.type == "error"
            and seen["console_errors"].append(message.text))
    page.on("pageerror", lambda error: seen["page_errors"].append(str(error)))

    def dialog(opened):
        seen["dialogs"].append(opened.message)
        opened.dismiss()

    page.on("dialog", dialog)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    _screenshot(page, screenshot)
    return page, seen


def _screenshot(page, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    extra = os.environ.get("TWINRUN_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


def assert_rendered(page, seen, kind, plots):
    assert seen == {"console_errors": [], "page_errors": [], "dialogs": [], "requests": []}
    headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
    for name in PAGE_SECTIONS[kind]:
        assert name in headings, (name, headings)
    boxes = page.eval_on_selector_all("svg", """svgs => svgs.map(s => {
        const r = s.getBoundingClientRect();
        return [r.width, r.height, s.querySelectorAll('.data').length]; })""")
    assert len(boxes) == plots, boxes
    for width, height, drawn in boxes:
        assert width > 100 and height > 50 and drawn > 0, boxes


@requires_data
def test_a_trained_runs_report_renders_offline_with_curves_marks_and_confusion_heatmap(
        browser, store, trained_run, tmp_path):
    path = write_report(store, trained_run, tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-run.png")
    assert_rendered(page, seen, "run", plots=3)  # loss, accuracy, confusion matrix
    text = page.inner_text("main")
    assert "stopped after epoch 2" in text and "restored best: epoch" in text
    assert "Ankle boot" in text and "torch.manual_seed" in text
    # The heatmap: one cell per (true, predicted) pair of Fashion-MNIST's ten classes.
    assert page.eval_on_selector_all("svg rect.data", "r => r.length") == 100
    for fmt in ("md", "json"):
        write_report(store, trained_run, tmp_path, fmt)


def test_a_diverged_checks_report_renders_offline_with_curves_growth_and_localised_layer(
        browser, store, diverged_check, tmp_path):
    path = write_report(store, diverged_check, tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-check.png")
    assert_rendered(page, seen, "check", plots=3)  # losses, |Δloss|, weight distance
    # Two replicas' loss curves overlaid, and the first divergence marked on the step plots.
    assert page.eval_on_selector_all("svg", "s => s[0].querySelectorAll('polyline.data').length") == 2
    assert page.eval_on_selector("svg", "s => s.textContent").count("first divergence: step 8") == 1
    table = page.inner_text("section:has(h2:text-is('First divergence'))")
    assert SCRIPT_TAG in table and "Offset" in table and "forward pass" in table
    env = page.inner_text("section:has(h2:text-is('Environment differences'))")
    assert "replica 1" in env
    for fmt in ("md", "json"):
        write_report(store, diverged_check, tmp_path, fmt)


def test_html_in_a_checked_argument_and_layer_names_shows_as_text_and_opens_no_dialog(
        browser, store, diverged_check, tmp_path):
    path = write_report(store, diverged_check, tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-check-phone.png", width=390)
    assert seen["dialogs"] == []
    text = page.inner_text("body")
    assert ATTRIBUTE_BREAK in text and SCRIPT_TAG in text
    assert page.eval_on_selector_all("script, img, iframe, object, embed", "e => e.length") == 0
    # Readable on a phone: nothing wider than the screen but the scrollable tables.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_run_with_html_in_every_name_shows_them_as_text_and_opens_no_dialog(
        browser, store, hostile_run, tmp_path):
    path = write_report(store, hostile_run, tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-hostile-run.png")
    assert seen == {"console_errors": [], "page_errors": [], "dialogs": [], "requests": []}
    text = page.inner_text("body")
    assert text.count(SCRIPT_TAG) >= 5 and text.count(ATTRIBUTE_BREAK) >= 3
    assert page.eval_on_selector_all("script, img, iframe, object, embed", "e => e.length") == 0


@requires_data
def test_a_real_variance_studys_report_renders_offline_with_strips_shares_and_disagreement(
        browser, store, small_studies, tmp_path):
    path = write_report(store, small_studies["variance"], tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-study.png")
    # the strips by source, the variance share and SD against the floor, the disagreement
    assert_rendered(page, seen, "study", plots=4)
    strips = page.eval_on_selector("svg", "s => s.querySelectorAll('circle.data').length")
    assert strips == 4  # one dot per run: init and all, two runs each
    assert page.eval_on_selector_all("svg path.interval", "p => p.length") == 2
    text = page.inner_text("main")
    assert "independent-errors floor" in text and "share of the all-sources variance" in text
    for fmt in ("md", "json"):
        write_report(store, small_studies["variance"], tmp_path, fmt)
    phone, seen = open_offline(browser, path, tmp_path / "report-study-phone.png", width=390)
    assert seen["console_errors"] == [] and seen["requests"] == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390


@requires_data
def test_a_real_cv_and_its_comparison_with_the_variance_study_render_offline(
        browser, store, small_studies, tmp_path):
    path = write_report(store, small_studies["cv"], tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-cv.png")
    assert_rendered(page, seen, "cv", plots=1)
    table = page.inner_text("section:has(h2:text-is('Fold table'))")
    assert "repeat=0,fold=0" in table and "repeat=0,fold=1" in table
    path = write_report(store, small_studies["variance"], tmp_path,
                        against=small_studies["cv"])
    page, seen = open_offline(browser, path, tmp_path / "report-compare.png")
    assert_rendered(page, seen, "compare", plots=2)  # both arms' runs; the difference and CI
    verdict = page.inner_text("section:has(h2:text-is('Verdict'))")
    assert small_studies["variance"] in verdict and small_studies["cv"] in verdict


@pytest.fixture(scope="session")
def hash_seed_check(store):
    """A DIVERGED check of a script whose labels come from iterating a set of strings, run with
    a random hash seed per replica: lint names the line (set_labels.py:20) that explains it."""
    script = Path(__file__).parent / "scripts" / "set_labels.py"
    completed = run_cli("check", "-n", "2", "--hash-seed", "random", "--json", "--store", store,
                        "--", "python", script)
    assert completed.returncode == 1, completed.stderr[-3000:]
    verdict = json.loads(completed.stdout)
    assert verdict["reading"]["culprit"]["line"] == 20, verdict["reading"]
    return verdict["check_id"]


def test_a_check_page_opens_with_its_headline_and_the_culprits_line_above_the_plots(
        browser, store, hash_seed_check, tmp_path):
    path = write_report(store, hash_seed_check, tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-check-headline.png")
    assert seen == {"console_errors": [], "page_errors": [], "dialogs": [], "requests": []}
    headline = page.inner_text("#headline")
    assert headline.startswith("Not reproducible: first differs in the training data")
    assert "most likely cause: the hash seed, at tests/scripts/set_labels.py:20" in headline \
        or "set_labels.py:20" in headline
    culprit = page.inner_text("#culprit")
    assert "set_labels.py:20" in culprit and "classes = list(names)" in culprit
    assert "fix: Iterate over sorted(...) of the set instead." in culprit
    # Both sit above every plot, and no sentence shows a literal backtick.
    tops = page.evaluate("""() => [document.querySelector('#headline'),
        document.querySelector('#culprit'), document.querySelector('svg')]
        .map(e => e.getBoundingClientRect().top)""")
    assert tops[0] < tops[1] < tops[2], tops
    assert "`" not in page.inner_text("body")
    # The findings are laid out, not left as JSON under "More from the verdict".
    findings = page.inner_text("section:has(h2:text-is('Pitfalls in the script'))")
    assert "[set-order]" in findings and "why:" in findings
    assert '"rule"' not in page.inner_text("body")


@requires_data
def test_a_two_fold_cv_page_keeps_its_accuracy_axis_within_0_and_1_and_warns_about_n_2(
        browser, store, small_studies, tmp_path):
    path = write_report(store, small_studies["cv"], tmp_path)
    page, seen = open_offline(browser, path, tmp_path / "report-cv-axis.png")
    assert seen["console_errors"] == [] and seen["requests"] == []
    ticks = page.eval_on_selector("svg", """s => [...s.querySelectorAll('text')]
        .filter(t => t.getAttribute('text-anchor') === 'end').map(t => t.textContent)""")
    values = [float(t) for t in ticks if t.replace(".", "", 1).replace("-", "", 1).isdigit()]
    assert values and all(0.0 <= v <= 1.0 for v in values), ticks
    # The interval drawn (Nadeau & Bengio, on the logit scale) stays inside the plot area.
    interval_top, interval_bottom, plot_top, plot_bottom = page.eval_on_selector("svg", """s => {
        const i = s.querySelector('path.interval').getBBox();
        const r = s.querySelector('rect').getBBox();
        return [i.y, i.y + i.height, r.y, r.y + r.height]; }""")
    assert plot_top <= interval_top and interval_bottom <= plot_bottom + 0.5
    headline = page.inner_text("#headline")
    assert "over 2 runs" in headline and "Too few runs" in headline
    warning = page.inner_text("p.few-runs")
    assert warning.startswith("Warning: both intervals rest on fewer than 5 runs. Only 2 runs")
    assert "about 18 runs" in warning
    data = json.loads(write_report(store, small_studies["cv"], tmp_path, "json").read_text())
    for key in ("ci95", "ci95_corrected"):
        low, high = data["results"][key]
        assert 0.0 <= low < high <= 1.0, (key, low, high)
    assert data["results"]["reading"]["few_runs"] is True
