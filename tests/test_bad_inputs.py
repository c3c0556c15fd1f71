"""The last bad inputs a new user tried: each one sentence and exit status 2 through the real
CLI, before anything runs (no store created, no replica started). None of these trains.
"""

import json
import zipfile

import pytest

from conftest import assert_one_sentence_error, run_cli
from twinrun.store import Store


# -- counts and durations ------------------------------------------------------------------------

@pytest.mark.parametrize("args, sentence", [
    (["check", "-n", "0"],
     "Error: Expected -n to be at least 2 (two replicas to compare). Received: n=0."),
    (["check", "-n", "-3", "--", "python", "train.py"],
     "Error: Expected -n to be at least 2 (two replicas to compare). Received: n=-3."),
    (["check", "--timeout", "-5"],
     "Error: Expected --timeout to be a number of seconds above 0. Received: -5."),
    (["check", "--timeout", "0", "--", "python", "train.py"],
     "Error: Expected --timeout to be a number of seconds above 0. Received: 0."),
    (["record", "-o", "ref.twinrun", "--timeout", "0"],
     "Error: Expected --timeout to be a number of seconds above 0. Received: 0."),
])
def test_counts_and_timeouts_out_of_range_are_refused_before_anything_runs(args, sentence,
                                                                          tmp_path):
    store = tmp_path / "store"
    if "--" in args:
        cut = args.index("--")
        args = [*args[:cut], "--store", store, *args[cut:]]
    else:
        args = [*args, "--store", store]
    completed = run_cli(*args, cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == sentence + "\n"
    assert not store.exists()


# -- store paths, for every command that reads the store -----------------------------------------

READERS = [
    ["runs"], ["checks"], ["studies"], ["show", "20261201"], ["report", "20261201"],
    ["diff", "20261201", "20261202"], ["export", "mlflow", "20261201"], ["resume", "cv-0123"],
]


@pytest.mark.parametrize("args", READERS, ids=lambda args: args[0])
def test_a_store_path_that_is_a_file_is_refused(args, tmp_path):
    path = tmp_path / "runs.txt"
    path.write_text("not a store\n")
    completed = run_cli(*args, "--store", path, cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: {path} is a file, not a run store folder; pass the folder that holds "
        f"runs.sqlite (`twinrun train` creates one) with --store DIR.\n")


@pytest.mark.parametrize("args", READERS, ids=lambda args: args[0])
def test_a_store_that_is_not_sqlite_is_refused(args, tmp_path):
    folder = tmp_path / "garbage"
    folder.mkdir()
    (folder / "runs.sqlite").write_bytes(b"these bytes are no SQLite database" * 100)
    completed = run_cli(*args, "--store", folder, cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr.startswith(
        f"Error: The run store database {folder / 'runs.sqlite'} is corrupt (file is not a "
        f"database)")


@pytest.mark.parametrize("args", READERS, ids=lambda args: args[0])
def test_a_store_that_does_not_exist_is_refused_and_not_created(args, tmp_path):
    missing = tmp_path / "mistyped-store"
    completed = run_cli(*args, "--store", missing, cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: There is no run store at {missing}; `twinrun train` creates one there, or "
        f"pass --store DIR to read another.\n")
    assert not missing.exists()


def test_the_database_file_itself_is_refused_with_its_folder_named(tmp_path):
    Store(tmp_path / "store").close()
    completed = run_cli("runs", "--store", tmp_path / "store" / "runs.sqlite")
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: {tmp_path / 'store' / 'runs.sqlite'} is the run store's database file; pass "
        f"its folder instead: --store {tmp_path / 'store'}.\n")


def test_the_default_store_may_be_missing_before_the_first_run(tmp_path):
    completed = run_cli("runs", cwd=tmp_path, env={"TWINRUN_STORE": ""})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "No runs in twinrun-runs yet; `twinrun train` records one."


# -- unknown ids ---------------------------------------------------------------------------------

CHECK_ID = "check-20261201-120000-abcdef"


@pytest.fixture
def store_with_a_check(tmp_path):
    path = tmp_path / "store"
    with Store(path) as store:
        store.record_check(CHECK_ID, kind="command", label="python train.py",
                           verdict="identical", result="{}", replicas=2, steps_compared=5)
    return path


def test_report_of_an_unknown_study_points_to_twinrun_studies(store_with_a_check):
    completed = run_cli("report", "variance-nosuch", "--store", store_with_a_check)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: No study variance-nosuch in store {store_with_a_check}; `twinrun studies` "
        f"lists the studies it holds.\n")


def test_show_of_an_unknown_check_points_to_twinrun_checks(store_with_a_check):
    completed = run_cli("show", "check-nosuch", "--store", store_with_a_check)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: No check check-nosuch in store {store_with_a_check}; `twinrun checks` lists "
        f"them.\n")


@pytest.mark.parametrize("order", ["check first", "run first"])
def test_diff_names_the_id_it_does_not_know(store_with_a_check, order):
    ids = [CHECK_ID, "nosuch"] if order == "check first" else ["nosuch", CHECK_ID]
    completed = run_cli("diff", *ids, "--store", store_with_a_check)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: No run nosuch in store {store_with_a_check}; `twinrun runs` lists them.\n")


def test_diff_of_a_known_run_and_a_known_check_still_says_it_cannot_compare_them(
        store_with_a_check):
    with Store(store_with_a_check) as store:
        run_id = store.start_run(workload="w", backend="torch", seed=0, config={}, seeds={},
                                 determinism={}, environment={})
    completed = run_cli("diff", CHECK_ID, run_id, "--store", store_with_a_check)
    assert_one_sentence_error(completed, "Cannot compare a run with a check")


# -- lint of files Python cannot decode -----------------------------------------------------------

@pytest.mark.parametrize("source, line", [
    (b'"""Train.\n\nBy Jos\xe9.\n"""\nimport random\n', 3),   # the parser said line 4
    (b"# caf\xe9\nimport random\n", 1),                        # the parser said nothing
    (b'import random\nx = 1\ny = "\xe9t\xe9"\n', 3),
])
def test_lint_names_the_line_of_the_first_byte_utf8_cannot_decode(source, line, tmp_path):
    script = tmp_path / "latin1.py"
    script.write_bytes(source)
    completed = run_cli("lint", script)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: {script} is not UTF-8 text and declares no other encoding (line {line} holds "
        f"byte 0xe9), so Python cannot read it; save it as UTF-8, or name its encoding in a "
        f"first-line comment such as `# -*- coding: latin-1 -*-`.\n")


def test_lint_reads_a_latin1_file_that_declares_its_encoding(tmp_path):
    script = tmp_path / "declared.py"
    script.write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\nimport os\n"
                       b"os.environ['PYTHONHASHSEED'] = '0'\n")
    completed = run_cli("lint", script, "--json")
    assert completed.returncode == 0, completed.stderr
    assert [f["line"] for f in json.loads(completed.stdout)["findings"]] == [4]


# -- reference files -----------------------------------------------------------------------------

def test_a_reference_naming_a_snapshot_outside_its_folder_is_refused(tmp_path):
    reference = tmp_path / "evil.twinrun"
    from twinrun.checks.reference import FORMAT_NAME, FORMAT_VERSION

    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "epochs": [{"epoch": 0, "snapshot": "../../outside.npz"}]}
    with zipfile.ZipFile(reference, "w") as archive:
        archive.writestr("reference.json", json.dumps(header))
        archive.writestr("snapshots/../../outside.npz", b"weights")
    store = tmp_path / "store"
    completed = run_cli("check", "--against", reference, "--store", store, "--", "python",
                        "train.py", cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == (
        f"Error: {reference} names a snapshot '../../outside.npz' that is not a plain file name "
        f"(a path separator or `..`), which `twinrun record` never writes; it is refused. "
        f"Record the reference again.\n")
    assert not store.exists()


def test_a_reference_member_is_read_only_up_to_its_limit(tmp_path):
    from twinrun.checks.reference import MemberTooLarge, read_member

    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("reference.json", b"0" * 1_000_000)  # about 1 KB packed
    with zipfile.ZipFile(path) as archive:
        assert len(read_member(archive, "reference.json", limit=1_000_000)) == 1_000_000
        with pytest.raises(MemberTooLarge, match="unpacks to 1000000 bytes, more than the 999999"):
            read_member(archive, "reference.json", limit=999_999)


# -- usage errors ---------------------------------------------------------------------------------

def test_a_usage_error_is_the_usage_line_then_one_error_sentence():
    completed = run_cli("check", "--no-such-option")
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == ("Usage: twinrun check [OPTIONS] [COMMAND]...\n"
                                "Try 'twinrun check --help' for help.\n\n"
                                "Error: No such option '--no-such-option'.\n")


# -- files a command will write ------------------------------------------------------------------

@pytest.mark.parametrize("args, where, sentence", [
    (["record", "-o", "{blocker}/ref.twinrun"], "{blocker}/ref.twinrun",
     "--output {path}: {blocker} is a file, not a folder, so nothing can be written under it; "
     "give a file in an existing folder."),
    (["record", "-o", "{folder}"], "{folder}",
     "--output {path} is a folder; give a file name such as {path}/ref.twinrun."),
    (["check", "--report", "{folder}/missing/check.html"], "{folder}/missing/check.html",
     "--report {path}: the folder {folder}/missing does not exist; create it or give a file in "
     "an existing folder."),
    (["train", "--report", "/proc/report.html"], "/proc/report.html",
     "--report {path}: cannot write in the folder /proc (no such file or directory); give a "
     "file in a folder you can write."),
], ids=["record under a file", "record to a folder", "check in a missing folder",
        "train in /proc"])
def test_a_file_a_command_cannot_write_is_refused_before_it_runs(args, where, sentence,
                                                                 tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    names = {"blocker": blocker, "folder": folder}
    path = where.format(**names)
    store = tmp_path / "store"
    script = [] if args[0] == "train" else ["--", "python", "train.py"]
    completed = run_cli(*[a.format(**names) for a in args], "--store", store, *script,
                        cwd=tmp_path)
    assert_one_sentence_error(completed)
    assert completed.stderr == "Error: " + sentence.format(path=path, **names) + "\n"
    assert not store.exists()
