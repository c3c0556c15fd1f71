"""Results a person can act on: a headline first, the culprit's line under it, causes that
match the evidence, intervals inside the metric's range, and tables whose ids and numbers
survive an 80-column terminal.

The checks are real: tiny PyTorch scripts (a few optimizer steps each) checked in fresh
processes; the study is a real 2-fold CV of one epoch on 200 images.
"""

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import requires_data, run_cli
from twinrun.checks.causes import gpu_used, likely_causes
from twinrun.checks.verdict import Divergence
from twinrun.report.fit import fit_columns, short_ids
from twinrun.report.headline import check_reading, study_reading

SCRIPTS = Path(__file__).parent / "scripts"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TERMINAL_80 = {"TTY_COMPATIBLE": "1", "COLUMNS": "80", "NO_COLOR": "1"}


def _check(store, *args, expect):
    completed = run_cli("check", "-n", "2", "--store", store, *args)
    assert completed.returncode == expect, completed.stderr[-3000:]
    return completed


# -- checks: the headline and the culprit ------------------------------------------------------

def test_a_layer_that_diverges_again_at_the_same_step_is_unseeded_randomness_not_a_race(store):
    completed = _check(store, "--json", "--", "python", SCRIPTS / "zero_torch.py", "--noise",
                       expect=1)
    verdict = json.loads(completed.stdout)
    assert verdict["localization"]["race"] is False
    assert verdict["localization"]["rerun_divergence"] == verdict["first_divergence"]["step"]
    assert verdict["likely_causes"][0].startswith("Unseeded randomness in layer 2 (Noise):")
    assert not any("GPU" in cause for cause in verdict["likely_causes"])  # a CPU run
    assert verdict["reading"]["headline"] == (
        "Not reproducible: first differs at step 0 (epoch 1), layer 2 (Noise); most likely "
        "cause: unseeded randomness in layer 2 (Noise).")
    shown = run_cli("show", verdict["check_id"], "--store", store)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == verdict["reading"]["headline"]
    again = json.loads(run_cli("show", verdict["check_id"], "--store", store, "--json").stdout)
    assert again == verdict  # `show --json` prints what `check --json` printed, reading too


def test_the_line_that_explains_a_divergence_is_printed_under_the_headline_in_check_and_show(
        store):
    completed = _check(store, "--hash-seed", "random", "--", "python",
                       SCRIPTS / "set_labels.py", expect=1)
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("Not reproducible: first differs in the training data, before "
                               "step 0; most likely cause: the hash seed, at ")
    assert "set_labels.py:20 (fix: Iterate over `sorted(...)` of the set instead)." in lines[0]
    assert lines[1].startswith("  at ") and "set_labels.py:20: `list(names)` follows" in lines[1]
    assert lines[2].strip() == "classes = list(names)  # the order depends on the hash seed"
    assert lines[3].strip() == "fix: Iterate over `sorted(...)` of the set instead."
    # Someone under `twinrun check` is not told to run under `twinrun check`.
    assert "Run under `twinrun check`" not in completed.stdout
    check_id = json.loads(run_cli("checks", "--store", store, "--json").stdout)[0]["check_id"]
    shown = run_cli("show", check_id, "--store", store).stdout.splitlines()
    assert shown[:4] == lines[:4]


def test_an_identical_check_opens_with_reproducible_and_its_counts(store):
    completed = _check(store, "--", "python", SCRIPTS / "zero_torch.py", expect=0)
    assert completed.stdout.splitlines()[0] == "Reproducible: 2 replicas, 8 steps, same bits."
    check_id = json.loads(run_cli("checks", "--store", store, "--json").stdout)[0]["check_id"]
    page = run_cli("report", check_id, "--store", store, "--format", "md", "-o", "-").stdout
    assert page.splitlines()[2] == "**Reproducible: 2 replicas, 8 steps, same bits.**"


def test_likely_causes_name_gpu_kernels_only_when_a_gpu_was_there():
    first = Divergence(step=40, epoch=1, records=["loss", "variables"])
    race = {"step": 40, "rerun_divergence": 55, "race": True,
            "layer": {"name": "conv", "class": "Conv2d"}}
    on_cpu = likely_causes(first, [], race, gpu_used=False)[0]
    on_gpu = likely_causes(first, [], race, gpu_used=True)[0]
    assert on_cpu.startswith("Numerical nondeterminism") and "GPU" not in on_cpu
    assert "GPU atomics" in on_gpu
    assert gpu_used([{"framework": {"devices": ["cpu", "cuda:0"]}}])
    assert not gpu_used([{"framework": {"devices": ["cpu"]}}, {}])
    # Something that differed in the environment is named before any guess about a layer.
    threads = [{"key": "threads.intra_op", "values": [1, 2]}]
    same_step = dict(race, rerun_divergence=40, race=False)
    assert likely_causes(first, threads, same_step)[0].startswith("Thread counts differ")


def test_a_headline_never_points_at_a_finding_the_hooks_made_harmless():
    # An unseeded framework is seeded by the hooks under `twinrun check`: not the culprit.
    verdict = {"verdict": "diverged", "replicas": [{}, {}], "steps_compared": 3,
               "first_divergence": {"step": 2, "epoch": 1, "records": ["loss"],
                                    "layer": {"name": "noise", "class": "Noise"}},
               "likely_causes": ["Unseeded randomness in layer noise (Noise): ..."],
               "findings": [{"rule": "framework-unseeded", "file": "/x/train.py", "line": 9,
                             "fix": "Seed it."}]}
    reading = check_reading(verdict)
    assert reading["culprit"] is None
    assert reading["headline"] == ("Not reproducible: first differs at step 2 (epoch 1), layer "
                                   "noise (Noise); most likely cause: unseeded randomness in "
                                   "layer noise (Noise).")


# -- studies: the headline and what more runs would buy ----------------------------------------

def test_a_two_run_variance_study_says_it_cannot_rank_sources_and_how_many_runs_would():
    results = {"kind": "variance", "metric": "test_accuracy", "sources": {
        "init": {"n": 2, "mean": 0.86, "sd": 0.017},
        "all": {"n": 2, "mean": 0.86, "sd": 0.017}}}
    reading = study_reading(results)
    assert reading["headline"] == (
        "Test accuracy 0.860 ± 0.017 (SD) over 2 runs. Too few runs to rank sources: about 32 "
        "runs per source would give a 95 % interval of ±0.004 on each source's SD.")
    assert (reading["few_runs"], reading["runs_needed"]) == (True, 32)


# -- tables ------------------------------------------------------------------------------------

def test_an_80_column_table_drops_whole_columns_before_it_cuts_an_id_or_a_number():
    columns = ["run id", "when", "status", "workload", "test acc", "fingerprint"]
    cells = [["20261202-003251-82dfce", "2026-12-02 00:32:51", "finished",
              "tests/scripts/zero_torch.py", "0.860123", "9f059ef9eb794b1a"]]
    fit = fit_columns(columns, cells, 80, keep={"run id", "test acc", "fingerprint"},
                      drop_order=["when"])
    assert fit.hidden == ["when"]
    shown = [columns[i] for i in fit.shown]
    assert {"run id", "test acc", "fingerprint"} <= set(shown)
    assert fit.widths[shown.index("run id")] == 22 and fit.widths[shown.index("test acc")] == 8


def test_short_ids_are_unique_prefixes_of_at_least_eight_characters():
    among = ["20261202-003251-82dfce", "20261202-003251-996bd4", "20261203-101010-aaaaaa",
             "check-20261202-003243-7bc40a", "cv-cdc139fd75", "cv-cdc2a0000"]
    shown = short_ids(among, among)
    for full, short in shown.items():
        assert len(short) >= 8 and full.startswith(short)
        assert [other for other in among if other.startswith(short)] == [full]
    assert shown["20261203-101010-aaaaaa"] == "20261203"


@pytest.mark.slow
@requires_data
def test_at_80_columns_every_listed_id_is_accepted_by_show_and_no_number_is_cut(store):
    _check(store, "--", "python", SCRIPTS / "zero_torch.py", expect=0)
    cv = run_cli("cv", "--folds", "2", "--preset", "tiny", "--set", "epochs=1",
                 "--backend", "torch", "--threads", "1", "--store", store)
    assert cv.returncode == 0, cv.stderr[-3000:]
    runs = json.loads(run_cli("runs", "--store", store, "--json").stdout)
    listed = {}
    for command, key in (("runs", "run_id"), ("checks", "check_id"), ("studies", "study_id")):
        completed = run_cli(command, "--store", store, env=TERMINAL_80)
        assert completed.returncode == 0, completed.stderr
        text = ANSI.sub("", completed.stdout)
        assert "…" not in text
        assert all(len(line) <= 80 for line in text.splitlines()), text
        rows = text.split("─" * 10, 1)[1].splitlines()[1:]
        rows = rows[:rows.index("")] if "" in rows else rows  # the table ends at a blank line
        listed[command] = [row.split()[0] for row in rows if row and not row[0].isspace()]
        assert listed[command], text
    assert len(listed["runs"]) == len(runs) == 4 and len(listed["checks"]) == 1
    assert len(listed["studies"]) == 1
    for short in [i for ids in listed.values() for i in ids]:
        assert len(short) >= 8
        shown = run_cli("show", short, "--store", store, "--json")
        assert shown.returncode == 0, (short, shown.stderr)
        record = json.loads(shown.stdout)
        full = record.get("run_id") or record.get("check_id") or record.get("study_id")
        assert full.startswith(short), (short, full)
    # The numbers in the runs table are the stored ones, whole.
    table = ANSI.sub("", run_cli("runs", "--store", store, env=TERMINAL_80).stdout)
    for run in runs:
        if run["test_accuracy"] is not None:
            assert f"{run['test_accuracy']:.6g}" in table
        assert run["fingerprint"][:16] in table
    # A moved store still resumes its study (nothing left to run) and shows it.
    moved = Path(str(store) + "-moved")
    shutil.move(store, moved)
    study = listed["studies"][0]
    resumed = run_cli("resume", study, "--store", moved)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert str(store) + "/" not in resumed.stdout + resumed.stderr
    assert run_cli("show", study, "--store", moved).returncode == 0


# -- a store that can move ---------------------------------------------------------------------

def test_a_copied_store_whose_original_is_gone_shows_reports_and_diffs_from_its_new_folder(
        tmp_path):
    original = tmp_path / "original"
    _check(original, "--hash-seed", "random", "--", "python", SCRIPTS / "set_labels.py",
           expect=1)
    _check(original, "--", "python", SCRIPTS / "zero_torch.py", expect=0)
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    checks = json.loads(run_cli("checks", "--store", copy, "--json").stdout)
    runs = json.loads(run_cli("runs", "--store", copy, "--json").stdout)
    assert len(checks) == 2 and len(runs) == 4
    printed = []
    for check in checks:
        check_id = check["check_id"]
        for args in (("show", check_id), ("show", check_id, "--json"),
                     ("report", check_id, "--format", "md", "-o", "-"),
                     ("report", check_id, "--format", "json", "-o", "-"),
                     ("report", check_id, "-o", tmp_path / f"{check_id}.html")):
            completed = run_cli(*args, "--store", copy)
            assert completed.returncode == 0, (args, completed.stderr)
            printed.append(completed.stdout + completed.stderr)
        page = (tmp_path / f"{check_id}.html").read_text(encoding="utf-8")
        printed.append(page)
        assert page.count('class="data"') >= 2  # the loss curves, read from the moved traces
        shown = json.loads(run_cli("show", check_id, "--store", copy, "--json").stdout)
        assert f"traces and logs in {copy / 'checks' / check_id}" in shown["notes"]
    for run in runs:
        completed = run_cli("show", run["run_id"], "--store", copy, "--json")
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout)["artifacts"] == str(copy / "checks" /
                                                                run["check_id"])
        printed.append(completed.stdout)
        printed.append(run_cli("show", run["run_id"], "--store", copy).stdout)
    for args in (("diff", checks[0]["check_id"], checks[1]["check_id"], "--all"),
                 ("diff", runs[0]["run_id"], runs[1]["run_id"], "--all")):
        completed = run_cli(*args, "--store", copy)
        assert completed.returncode == 0, completed.stderr
        printed.append(completed.stdout)
    for text in printed:
        assert str(original) not in text
    assert any(str(copy / "checks") in text for text in printed)


# -- the README's example of output ------------------------------------------------------------

README = Path(__file__).parent.parent / "README.md"
EXAMPLE = Path(__file__).parent.parent / "examples" / "seed-question.ipynb"


def _comparable(text, store):
    """Output with what changes from run to run (ids, the store's folder, the loss and the
    fingerprint this CPU gives) replaced by names."""
    # A check that takes over 30 s prints a progress line before its verdict when stdout is no
    # terminal (as on a slow CI box): that line is not part of what the README shows.
    text = re.sub(r"(?m)^replica \d+: .*\n", "", text)
    text = text.replace(str(store), "STORE")
    text = re.sub(r"/\S+/checks/", "STORE/checks/", text)
    text = re.sub(r"check-\d{8}-\d{6}-[0-9a-f]{6}", "CHECK_ID", text)
    text = re.sub(r"\b\d\.\d{8}\b", "LOSS", text)
    text = re.sub(r"\b[0-9a-f]{16}\b", "FINGERPRINT", text)
    # Where a long path wraps the text depends on the path: compare words, not lines.
    return text.split()


@pytest.mark.slow
@requires_data
def test_the_readmes_notebook_check_output_is_what_twinrun_check_prints_today():
    # A short store path, as the README's: a path longer than a line would be folded.
    store = Path(tempfile.mkdtemp(prefix="tw", dir="/tmp"))
    completed = run_cli("check", EXAMPLE.relative_to(README.parent), "--store", store,
                        env={"COLUMNS": "80"}, cwd=README.parent)
    shutil.rmtree(store, ignore_errors=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    readme = README.read_text(encoding="utf-8")
    start = readme.index("`twinrun check` prints:\n\n") + len("`twinrun check` prints:\n\n")
    end = readme.index("\nFrom inside a notebook", start)
    shown = "\n".join(line[4:] for line in readme[start:end].splitlines())
    readme_store = re.search(r"--store (\S+)", shown).group(1)
    assert _comparable(shown, readme_store) == _comparable(completed.stdout, store)


def test_the_answer_demo_verdict_keeps_every_number_whole_at_80_columns():
    # The case: `show` of the answer-demo check printed loss and accuracy as `0.69…`.
    from rich.console import Console

    from twinrun.report.terminal import render_verdict

    metrics = {"loss": 0.69314718, "acc": 0.50123456, "val_loss": 0.69314999,
               "val_acc": 0.49876543}
    replica = {"steps": 469, "metrics": metrics, "fingerprint": "9f059ef9eb794b1a",
               "final_loss": 0.69314718}
    out = Console(width=80, force_terminal=True, no_color=True, record=True)
    render_verdict({"verdict": "identical", "steps_compared": 469, "replicas": [replica] * 5,
                    "notes": []}, "answer-demo", out=out)
    text = ANSI.sub("", out.export_text())
    assert "…" not in text
    for value in ("0.69314718", "0.50123456", "0.69314999", "0.49876543", "9f059ef9eb794b1a"):
        assert text.count(value) == 5, text
