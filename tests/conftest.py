"""Shared helpers: run the installed `twinrun` command as a user would, and find its data."""

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twinrun.errors import DataError
from twinrun.workloads import fashion_mnist

TWINRUN = str(Path(sys.executable).parent / "twinrun")


def run_cli(*args, env=None, cwd=None, timeout=900):
    """Run `twinrun ARGS` in a fresh process; return the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.pop("KERAS_BACKEND", None)
    full_env.update(env or {})
    return subprocess.run([TWINRUN, *map(str, args)], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_sentence_error(completed, *fragments):
    """An error: exit 2 (1 means "diverged"), one `Error:` line first on stderr, no traceback."""
    assert completed.returncode == 2, (completed.returncode, completed.stdout, completed.stderr)
    assert "Traceback" not in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stdout, completed.stdout
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("Error: "), completed.stderr
    for fragment in fragments:
        assert fragment in completed.stderr, completed.stderr


@pytest.fixture
def one_ray_cluster_at_a_time():
    """Hold a lock on this machine while a test starts a local Ray cluster: `make test` runs
    test files in parallel workers (pytest-xdist), and two local clusters started at once can
    pick the same ports (ray-project/ray#53906)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "twinrun-tests-ray.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


def fashion_mnist_dir():
    """The folder twinrun itself reads Fashion-MNIST from (its own `locate()`), or None."""
    try:
        return fashion_mnist.locate()
    except DataError:
        return None


def in_ci():
    """True under a CI service (they set CI=true), where every test must run."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_unless_ci(reason):
    """Skip the calling test for `reason`, or fail it under CI, where a skip would hide that a
    package or framework the suite needs is missing or broken."""
    if in_ci():
        pytest.fail(f"CI must run every test, and this one cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def require(module):
    """Import and return `module` (pytest.importorskip, but failing under CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        skip_unless_ci(f"needs {module}, which does not import: {error}")


def requires(*modules):
    """A mark: the test needs these importable modules; skipped without them (found by
    `importlib.util.find_spec`, nothing imported), and failed under CI=true."""
    return pytest.mark.requires_modules(*modules)


def _missing(module):
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


# A test marked `requires_data` needs the real Fashion-MNIST where twinrun looks for it. On a
# developer's machine without it, the test is skipped; under CI a skip would hide that the
# test never ran, so it fails instead.
requires_data = pytest.mark.requires_data


def pytest_runtest_setup(item):
    for marker in item.iter_markers("requires_modules"):
        missing = [module for module in marker.args if _missing(module)]
        if missing:
            skip_unless_ci(f"needs {', '.join(missing)}, not installed")
    if item.get_closest_marker("requires_data") is None:
        return
    try:
        fashion_mnist.locate()
        return
    except DataError as error:
        problem = str(error)
    if in_ci():
        pytest.fail(f"This test needs Fashion-MNIST, and CI must run every test: {problem} "
                    "(`make setup` installs it.)", pytrace=False)
    pytest.skip(f"needs Fashion-MNIST: {problem}")
