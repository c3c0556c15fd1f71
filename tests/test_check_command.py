"""What `twinrun check -- COMMAND` runs is found before any replica starts."""

import pytest

from conftest import assert_one_sentence_error, run_cli
from twinrun.checks.commands import python_target


@pytest.mark.parametrize("args, target", [
    (["train.py", "--epochs", "2"], ("script", "train.py")),
    (["-W", "ignore", "-X", "dev", "train.py", "-W"], ("script", "train.py")),
    (["-Wignore", "-Xdev", "-u", "train.py"], ("script", "train.py")),
    (["-uB", "-W", "error", "train.py"], ("script", "train.py")),
    (["--check-hash-based-pycs", "always", "train.py"], ("script", "train.py")),
    (["-m", "package.train", "--lr", "0.1"], ("module", "package.train")),
    (["-X", "dev", "-mpackage.train"], ("module", "package.train")),
    (["-W", "ignore", "-c", "print(1)", "train.py"], ("code", "print(1)")),
    (["-u"], ("stdin", None)),
    (["-", "train.py"], ("stdin", None)),
])
def test_the_script_or_module_is_found_past_the_interpreters_own_options(args, target):
    assert python_target(args) == target


def test_a_missing_script_after_options_with_values_is_named(tmp_path, store):
    completed = run_cli("check", "--store", store, "--", "python", "-W", "ignore", "-X", "dev",
                        "missing.py", "--epochs", "1", cwd=tmp_path)
    assert_one_sentence_error(completed, "Script not found: missing.py")


def test_a_missing_module_is_named_without_running_anything(tmp_path, store):
    package = tmp_path / "mypackage"
    package.mkdir()
    marker = tmp_path / "imported"
    # Finding the module must not import (run) the package.
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    completed = run_cli("check", "--store", store, "--", "python", "-m", "mypackage.nope",
                        cwd=tmp_path)
    assert_one_sentence_error(completed, "Module not found: mypackage.nope")
    assert not marker.exists()


def test_python_reading_its_program_from_stdin_is_refused(store):
    completed = run_cli("check", "--store", store, "--", "python", "-u")
    assert_one_sentence_error(completed, "from stdin")
