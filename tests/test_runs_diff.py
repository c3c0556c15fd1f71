"""`twinrun runs` filters and `twinrun diff`: real records, made by the commands that make them.

The store holds two checks and one study, each of tiny scripts (seconds, not a Fashion CNN):
- check A: two replicas of a PyTorch script named `[red]x.py`, run with `--tag [red]x`, with
  1 and 2 threads (a real difference between the two runs);
- check B: two replicas of the README's Keras script on JAX, seed 1;
- a variance study of a PyTorch script: two runs whose `init` seeds differ.
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_sentence_error, run_cli
from twinrun.report.diff import diff_references, diff_runs, differing_rows

SCRIPTS = Path(__file__).parent / "scripts"
MARKUP = "[red]x"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _checked(completed, expected_code=0):
    assert completed.returncode == expected_code, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs-diff")
    store = folder / "store"
    script = folder / f"{MARKUP}.py"
    shutil.copy(SCRIPTS / "torch_markup_names.py", script)
    _checked(run_cli("check", "-n", 2, "--threads", "1,2", "--no-localize", "--store", store,
                     "--", "python", script.name, "--tag", MARKUP, cwd=folder))
    _checked(run_cli("check", "-n", 2, "--seed", 1, "--backend", "jax", "--store", store,
                     "--", "python", SCRIPTS / "readme_keras.py"))
    _checked(run_cli("variance", "--runs", 2, "--vary", "init", "--store", store,
                     "--", "python", SCRIPTS / "study_torch.py"))
    checks = json.loads(_checked(run_cli("checks", "--store", store, "--json")).stdout)
    by_label = {check["label"]: check["check_id"] for check in checks}
    studies = json.loads(_checked(run_cli("studies", "--store", store, "--json")).stdout)
    all_runs = json.loads(_checked(run_cli("runs", "--store", store, "--limit", 0,
                                           "--json")).stdout)
    assert len(all_runs) == 6, all_runs
    return {
        "store": store,
        "runs": all_runs,
        "check_a": by_label[f"python {MARKUP}.py --tag {MARKUP}"],
        "check_b": next(i for label, i in by_label.items() if "readme_keras" in label),
        "study": studies[0]["study_id"],
    }


def listed(records, *options):
    completed = _checked(run_cli("runs", "--store", records["store"], "--limit", 0, "--json",
                                 *options))
    return {run["run_id"] for run in json.loads(completed.stdout)}


def ids(records, **fields):
    return {run["run_id"] for run in records["runs"]
            if all(run[name] == value for name, value in fields.items())}


def replicas(records, check):
    by_replica = {run["replica"]: run["run_id"] for run in records["runs"]
                  if run["check_id"] == records[check]}
    return by_replica[0], by_replica[1]


# -- twinrun runs --------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_filter_lists_exactly_the_runs_that_match_it(records):
    check_a, check_b, study = records["check_a"], records["check_b"], records["study"]
    assert len(ids(records, check_id=check_a)) == 2
    assert listed(records, "--check", check_a) == ids(records, check_id=check_a)
    assert listed(records, "--check", check_b) == ids(records, check_id=check_b)
    assert listed(records, "--study", study) == ids(records, study_id=study)
    assert len(ids(records, study_id=study)) == 2
    assert listed(records, "--backend", "jax") == ids(records, backend="jax")
    assert listed(records, "--backend", "torch") == ids(records, backend="torch")
    assert len(ids(records, backend="torch")) == 4
    assert listed(records, "--workload", f"{MARKUP}.py") == ids(records, check_id=check_a)
    assert listed(records, "--workload", MARKUP) == set()  # the name as run, not a part of it


@pytest.mark.slow
def test_filters_combine_and_a_prefix_names_a_study_or_check(records):
    check_a, study = records["check_a"], records["study"]
    assert listed(records, "--backend", "torch", "--check", check_a[:-2]) == \
        ids(records, check_id=check_a)
    assert listed(records, "--backend", "jax", "--check", check_a) == set()
    assert listed(records, "--study", study, "--check", check_a) == set()
    assert listed(records, "--study", study, "--workload", f"{MARKUP}.py") == set()
    newest = _checked(run_cli("runs", "--store", records["store"], "--study", study, "--limit",
                              1, "--json"))
    assert [run["run_id"] for run in json.loads(newest.stdout)] == \
        [next(run["run_id"] for run in records["runs"] if run["study_id"] == study)]


@pytest.mark.slow
def test_the_filtered_table_prints_markup_like_names_literally(records):
    completed = _checked(run_cli("runs", "--store", records["store"], "--workload",
                                 f"{MARKUP}.py", env={"TTY_COMPATIBLE": "1", "COLUMNS": "200"}))
    text = ANSI.sub("", completed.stdout)
    assert f"{MARKUP}.py" in text
    assert f"--workload {MARKUP}.py" in text  # the title names the filter as typed
    empty = _checked(run_cli("runs", "--store", records["store"], "--workload", "[/x]"))
    assert "No runs" in empty.stdout and "--workload [/x]" in empty.stdout


@pytest.mark.slow
def test_an_unknown_study_or_check_or_backend_is_one_sentence_and_exit_2(records):
    store = records["store"]
    assert_one_sentence_error(run_cli("runs", "--store", store, "--study", "variance-nope"),
                              "No study variance-nope", "twinrun studies")
    assert_one_sentence_error(run_cli("runs", "--store", store, "--check", "check-nope"),
                              "No check check-nope", "twinrun checks")
    assert_one_sentence_error(run_cli("runs", "--store", store, "--study", records["check_a"]),
                              f"--check {records['check_a']}")
    assert_one_sentence_error(run_cli("runs", "--store", store, "--backend", "tf"),
                              "Unknown backend 'tf'")


# -- twinrun diff --------------------------------------------------------------------------------


def differing(diff_json):
    return {(section["title"], row["key"]) for section in diff_json["sections"]
            for row in section["rows"] if row["differs"]}


def rows_of(diff_json, title):
    return {row["key"]: row for section in diff_json["sections"] if section["title"] == title
            for row in section["rows"]}


@pytest.mark.slow
def test_diff_of_replicas_with_1_and_2_threads_marks_the_thread_counts_and_no_equal_row(records):
    one, two = replicas(records, "check_a")
    completed = _checked(run_cli("diff", one, two, "--store", records["store"], "--json"))
    result = json.loads(completed.stdout)
    marked = differing(result)
    assert ("Config", "threads") in marked
    assert ("Environment", "threads.intra_op") in marked
    assert ("Environment", "env.OMP_NUM_THREADS") in marked
    seeds = rows_of(result, "Seeds")
    assert seeds and not any(row["differs"] for row in seeds.values())
    assert rows_of(result, "Run")["workload"]["differs"] is False
    assert rows_of(result, "Run")["wall_time"]["differs"] is None  # shown, never counted
    assert ("Environment", "pid") not in marked and ("Environment", "captured_at") not in marked
    assert result["differing"] == len(marked)

    piped = _checked(run_cli("diff", one, two, "--store", records["store"]))
    lines = piped.stdout.splitlines()
    assert any(line.startswith("*") and " threads " in f"{line} " for line in lines)
    init_line = next(line for line in lines if line.split()[:1] == ["init"])
    assert not init_line.startswith("*")
    assert f"The two runs differ in {result['differing']} rows" in piped.stdout


def shown_rows(text):
    """{section title: the row keys the text shows}; a row is "  key  a  b", or "*  key  a  b"
    when it differs."""
    found, title = {}, None
    for line in text.splitlines():
        if line and line[0] not in " *":
            title = line.split(":")[0]
            found.setdefault(title, set())
        elif line[:2] in ("  ", "* ") and title is not None:
            key = line[2:].split("  ")[0].strip()
            if key and not key.startswith("("):
                found[title].add(key)
    return found


@pytest.mark.slow
def test_diff_all_shows_every_row_where_the_default_shows_only_those_that_differ(records):
    one, two = replicas(records, "check_a")
    sections = json.loads(_checked(run_cli("diff", one, two, "--store", records["store"],
                                           "--json")).stdout)["sections"]
    short = _checked(run_cli("diff", one, two, "--store", records["store"])).stdout
    full = _checked(run_cli("diff", one, two, "--store", records["store"], "--all")).stdout
    short_rows, full_rows = shown_rows(short), shown_rows(full)
    big = [section for section in sections if len(section["rows"]) > 12]
    assert big, [(section["title"], len(section["rows"])) for section in sections]
    for section in sections:
        keys = {row["key"] for row in section["rows"]}
        differing = {row["key"] for row in section["rows"] if row["differs"]}
        assert full_rows[section["title"]] == keys, section["title"]
        if section in big:
            # More than 12 rows: only those that differ, and one line for the others.
            assert short_rows[section["title"]] == differing, section["title"]
            hidden = len(keys) - len(differing)
            assert (f"({hidden} more rows, equal or not compared, not shown; --all shows "
                    f"them)" in short) if differing else (
                f"{section['title']}: all {hidden} rows equal or not compared; --all shows "
                f"them." in short)
        else:
            assert short_rows[section["title"]] == keys, section["title"]
    assert "--all shows them" not in full


@pytest.mark.slow
def test_diff_of_two_study_runs_marks_the_init_seed_they_differ_in_and_not_the_others(records):
    first, second = sorted(ids(records, study_id=records["study"]))
    result = json.loads(_checked(run_cli("diff", first, second, "--store", records["store"],
                                         "--json")).stdout)
    seeds = rows_of(result, "Seeds")
    assert seeds["init"]["differs"] is True and seeds["init"]["a"] != seeds["init"]["b"]
    others = [row for key, row in seeds.items() if key != "init"]
    assert others and not any(row["differs"] for row in others)
    assert rows_of(result, "Fingerprints")["weights"]["differs"] is True


@pytest.mark.slow
def test_diff_on_a_terminal_highlights_differences_and_prints_markup_literally(records):
    one, two = replicas(records, "check_a")
    completed = _checked(run_cli("diff", one[:-1], two, "--store", records["store"],
                                 env={"TTY_COMPATIBLE": "1", "COLUMNS": "250"}))
    assert "\x1b[" in completed.stdout  # Rich drew it, with colour
    text = ANSI.sub("", completed.stdout)
    assert f"│ {MARKUP}.py " in text, text  # the workload cell, "[red]" and all
    threads_line = next(line for line in completed.stdout.splitlines()
                        if re.search(r"\bthreads\b", ANSI.sub("", line))
                        and "threads." not in line)
    assert "\x1b[1;33m" in threads_line  # the differing row is bold yellow
    init_line = next(line for line in completed.stdout.splitlines()
                     if re.search(r"│\s+init\s+│", ANSI.sub("", line)))
    assert "\x1b[1;33m" not in init_line


@pytest.mark.slow
def test_diff_of_two_checks_puts_verdicts_replicas_and_environments_side_by_side(records):
    completed = _checked(run_cli("diff", records["check_a"], records["check_b"], "--store",
                                 records["store"], "--json"))
    result = json.loads(completed.stdout)
    assert result["kind"] == "checks"
    assert result["ids"] == [records["check_a"], records["check_b"]]
    check = rows_of(result, "Check")
    assert check["label"]["differs"] is True and check["verdict"]["differs"] is False
    assert check["label"]["a"] == f"python {MARKUP}.py --tag {MARKUP}"
    environment = rows_of(result, "Environment")
    assert environment["framework.name"]["a"] == "torch"
    assert environment["framework.name"]["b"] == "jax"
    assert rows_of(result, "Replicas")["replica 0 fingerprint"]["differs"] is True
    # Check A's replicas ran with 1 and 2 threads; the verdict's own environment diff says so.
    assert "threads.intra_op" in rows_of(result, "Verdict")["differs between replicas"]["a"]


@pytest.mark.slow
def test_diff_of_unknown_or_mixed_ids_is_one_sentence_and_exit_2(records):
    store = records["store"]
    one, _ = replicas(records, "check_a")
    assert_one_sentence_error(run_cli("diff", one, "20990101-000000-ffffff", "--store", store),
                              "No run 20990101-000000-ffffff")
    assert_one_sentence_error(run_cli("diff", "check-nope", records["check_a"], "--store",
                                      store), "No check check-nope")
    assert_one_sentence_error(run_cli("diff", one, records["check_a"], "--store", store),
                              "Cannot compare a run with a check")
    assert_one_sentence_error(run_cli("diff", "a.twinrun", "b.twinrun", "--store", store),
                              "Reference not found: a.twinrun")


def test_diff_of_a_missing_store_is_one_sentence_and_exit_2(tmp_path):
    assert_one_sentence_error(run_cli("diff", "a", "b", "--store", tmp_path / "none"),
                              "There is no run store")


# -- the pure diff -------------------------------------------------------------------------------


def test_equal_values_are_not_marked_and_nan_equals_nan_but_a_flag_is_not_a_count():
    run = {"run_id": "a", "seed": 1, "config": {"threads": 1, "flag": True},
           "metrics": {"loss": float("nan")}, "history": [{"epoch": 1, "loss": 0.5}]}
    other = {"run_id": "b", "seed": 1, "config": {"threads": 1, "flag": 1},
             "metrics": {"loss": float("nan")}, "history": [{"epoch": 1, "loss": 0.5000001}]}
    result = diff_runs(run, other)
    assert {(title, row["key"]) for title, row in differing_rows(result)} == {
        ("Config", "flag"), ("Metrics per epoch", "epoch 1 loss")}
    assert result["differing"] == 2


def test_references_name_the_first_step_whose_fingerprints_differ():
    result = diff_references(
        {"header": {"seed": 0, "environment": {"cpu": {"model": "x"}}},
         "fingerprints": ["aa", "bb", "cc"]},
        {"header": {"seed": 0}, "environment": {"cpu": {"model": "y"}},
         "fingerprints": ["aa", "bx", "cx"]}, "main.twinrun", "branch.twinrun")
    assert result["ids"] == ["main.twinrun", "branch.twinrun"]
    fingerprints = rows_of(result, "Fingerprints")
    assert fingerprints["first differing step"]["a"] == 1
    assert fingerprints["step 1"] == {"key": "step 1", "a": "bb", "b": "bx", "differs": True}
    assert rows_of(result, "Environment")["cpu.model"]["differs"] is True
    assert rows_of(result, "Header")["seed"]["differs"] is False
    same = diff_references({"fingerprints": ["aa"]}, {"fingerprints": ["aa"]})
    assert same["differing"] == 0


# -- two reference files ---------------------------------------------------------------------------

def _reference_file(path, losses, threads):
    from twinrun.checks.reference import write_reference
    from twinrun.trace import TraceWriter, read_trace

    trace_path = path.with_suffix(".trace")
    writer = TraceWriter(trace_path)
    writer.header(["dense.kernel"], [[2]], backend="torch",
                  environment={"threads": {"intra_op": threads}}, threads=str(threads))
    for step, loss in enumerate(losses):
        writer.step(step, 0, f"{step:032x}", loss, [[1, 2, 3 + step]])
    writer.write({"kind": "end", "steps": len(losses)})
    writer.close()
    write_reference(path, read_trace(trace_path), {"kind": "command", "command": ["train.py"]},
                    environment={"threads": {"intra_op": threads}})
    return path


def test_two_reference_files_side_by_side_name_the_first_step_that_differs(tmp_path):
    a = _reference_file(tmp_path / "a.twinrun", [0.5, 0.25, 0.125], threads=2)
    b = _reference_file(tmp_path / "b.twinrun", [0.5, 0.25, 0.1251], threads=1)
    completed = _checked(run_cli("diff", a, b, "--json"))
    result = json.loads(completed.stdout)
    assert result["kind"] == "references"
    differing = {(title, row["key"]) for title, row in differing_rows(result)}
    assert ("Environment", "threads.intra_op") in differing
    assert ("Fingerprints", "step 2") in differing
    assert not any(key in ("step 0", "step 1") for _, key in differing)
    # The same file against itself: nothing differs.
    same = json.loads(_checked(run_cli("diff", a, a, "--json")).stdout)
    assert differing_rows(same) == []
    assert_one_sentence_error(run_cli("diff", a, "check-x", "--store", tmp_path),
                              "reference file")
