"""The exit-status contract: 0 success or identical, 1 diverged, 2 any error, 130 interrupted.

Even a bug inside twinrun gives one `Error:` sentence that names a log file holding the
traceback; `twinrun --debug` prints the traceback instead. The bugs here are planted by running
the real CLI in a fresh interpreter with one library function replaced.
"""

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import twinrun
from conftest import TWINRUN, assert_one_sentence_error, run_cli

SCRIPTS = Path(__file__).parent / "scripts"


def run_planted(patch, *args, tmp_path, env=None):
    """`twinrun ARGS` in a fresh interpreter after running `patch` (Python code) there."""
    code = "\n".join(["import sys", patch, "from twinrun.cli import main", "main()"])
    full_env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), **(env or {}))
    full_env.pop("KERAS_BACKEND", None)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=full_env,
                          capture_output=True, text=True, timeout=900)


def logged_path(completed):
    match = re.search(r"The full traceback is in (\S+)\.$", completed.stderr.strip())
    assert match, completed.stderr
    return Path(match.group(1))


# A comparison that raises, in both places it is looked up from.
BROKEN_COMPARISON = """
import twinrun.checks.judging, twinrun.checks.verdict
def first_divergence(traces):
    raise ValueError("planted failure in the comparison [/x] \\x1b[2J")
twinrun.checks.verdict.first_divergence = twinrun.checks.judging.first_divergence = first_divergence
"""

# A failure before any replica starts, for the cheap cases.
BROKEN_CHECK = """
import twinrun.checks
def check_command(*args, **kwargs):
    raise {exception}("planted failure before the replicas")
twinrun.checks.check_command = check_command
"""


@pytest.mark.slow
def test_an_exception_inside_the_comparison_exits_2_with_one_sentence_and_the_log_path(
        tmp_path, store):
    completed = run_planted(BROKEN_COMPARISON, "check", "-n", "2", "--store", store, "--",
                            "python", SCRIPTS / "torch_markup_names.py", tmp_path=tmp_path)
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert_one_sentence_error(completed, "twinrun failed unexpectedly",
                              "ValueError: planted failure in the comparison")
    assert len(completed.stderr.strip().splitlines()) == 1
    assert "\x1b" not in completed.stderr  # the message's control character is shown escaped
    assert "[/x] \\x1b[2J" in completed.stderr
    log = logged_path(completed)
    assert log.parent == tmp_path / "state" / "twinrun" / "errors"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert ", in first_divergence\nValueError: planted failure in the comparison" in text
    assert "\x1b" not in text  # a log read with `cat` must not drive the terminal either


def test_an_unexpected_exception_before_the_replicas_start_is_logged_too(tmp_path, store):
    completed = run_planted(BROKEN_CHECK.format(exception="RuntimeError"), "check", "--store",
                            store, "--", "python", "train.py", tmp_path=tmp_path)
    assert completed.returncode == 2
    assert_one_sentence_error(completed, "RuntimeError: planted failure before the replicas")
    assert "RuntimeError: planted failure" in logged_path(completed).read_text()


def test_debug_prints_the_traceback_instead_of_writing_a_log(tmp_path, store):
    completed = run_planted(BROKEN_CHECK.format(exception="RuntimeError"), "--debug", "check",
                            "--store", store, "--", "python", "train.py", tmp_path=tmp_path)
    assert completed.returncode == 2
    assert completed.stderr.startswith("Error: twinrun failed unexpectedly")
    assert "Traceback (most recent call last)" in completed.stderr
    assert "The full traceback is in" not in completed.stderr
    assert not (tmp_path / "state" / "twinrun" / "errors").exists()


def test_an_interrupt_exits_130_with_one_sentence(tmp_path, store):
    completed = run_planted(BROKEN_CHECK.format(exception="KeyboardInterrupt"), "check",
                            "--store", store, "--", "python", "train.py", tmp_path=tmp_path)
    assert completed.returncode == 130
    assert completed.stderr == "Error: Interrupted; nothing more was run.\n"


def test_a_user_error_names_no_log_file(store):
    completed = run_cli("check", "-n", "1", "--store", store)
    assert completed.returncode == 2
    assert_one_sentence_error(completed, "at least 2")
    assert "traceback" not in completed.stderr.lower()


def test_a_control_character_in_a_user_error_is_shown_escaped(store):
    completed = run_cli("check", "--store", store, "--", "python", "no_such\x1b[2J.py")
    assert completed.returncode == 2
    assert_one_sentence_error(completed, "no_such\\x1b[2J.py")
    assert "\x1b" not in completed.stderr


def test_click_usage_errors_still_exit_2_and_help_and_version_exit_0():
    usage = run_cli("check", "--no-such-option")
    assert usage.returncode == 2
    assert "Error: No such option" in usage.stderr and "--no-such-option" in usage.stderr
    expected = {
        "--help": "Usage: twinrun [OPTIONS] COMMAND [ARGS]...",
        "--version": f"twinrun, version {importlib.metadata.version('twinrun')}",
        "check --help": "Usage: twinrun check [OPTIONS] [COMMAND]...",
    }
    for args, first_line in expected.items():
        completed = subprocess.run([TWINRUN, *args.split()], capture_output=True, text=True,
                                   timeout=60)
        assert completed.returncode == 0, (args, completed.stderr)
        assert completed.stdout.splitlines()[0] == first_line
        assert completed.stderr == ""
    assert importlib.metadata.version("twinrun") == twinrun.__version__
