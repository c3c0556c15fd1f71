"""Shared helpers: run the installed `twinrun` command as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TWINRUN = str(Path(sys.executable).parent / "twinrun")
DEBIAN_DATA = Path("/usr/share/datasets/fashion-mnist")


def run_cli(*args, env=None, cwd=None, timeout=900):
    """Run `twinrun ARGS` in a fresh process; return the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.pop("KERAS_BACKEND", None)
    full_env.update(env or {})
    return subprocess.run([TWINRUN, *map(str, args)], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_sentence_error(completed, *fragments):
    """A user error: non-zero exit, one `Error:` line first on stderr, no traceback."""
    assert completed.returncode != 0, completed.stdout
    assert "Traceback" not in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stdout, completed.stdout
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("Error: "), completed.stderr
    for fragment in fragments:
        assert fragment in completed.stderr, completed.stderr


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


requires_data = pytest.mark.skipif(
    not DEBIAN_DATA.is_dir() and not os.environ.get("TWINRUN_DATA_DIR"),
    reason="Fashion-MNIST is not installed (make setup installs it)")
