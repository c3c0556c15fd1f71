"""The pytest plugin: `@pytest.mark.reproducible` proves a training function repeats bit for bit.

A test marked `reproducible` is not run in the pytest process: `twinrun.check` runs it in `n`
fresh processes (each with its hash seed fixed before start-up, as `twinrun check` does) and
compares the traces its `twinrun.keras.Trace()` or `twinrun.torch.Tracer(...)` writes. The test
passes when the replicas are identical and fails with the verdict in one line otherwise.

    import pytest, torch, twinrun, twinrun.torch

    @pytest.mark.reproducible(n=2, seed=7)
    def test_training_repeats_bit_for_bit():
        twinrun.deterministic(backend="torch")
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with twinrun.torch.Tracer(model, optimizer) as tracer:
            ...  # train, calling tracer.step(loss, batch) after each optimizer step

The marker takes `n` (default 2) and the options of `twinrun.check` (`seed`, `backend`,
`threads`, `hash_seed`, `lockstep`, `timeout`, `localize`, `store`). The check's records go to
`store`, else `$TWINRUN_STORE`, else a temporary folder that is deleted when the test passes and
named in the failure message when it does not. Without the marker, `assert twinrun.check(fn,
n=2).identical` does the same inside any test.

pytest finds this plugin through the `pytest11` entry point; it imports nothing of twinrun's
until a marked test runs.
"""

import inspect
import os
import shutil
import tempfile

import pytest

MARKER = "reproducible"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}(n=2, **options): run the test function in n fresh processes with "
        "twinrun.check and fail unless every step of their traces is identical.")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker(MARKER)
    if marker is None:
        return None
    function = pyfuncitem.obj
    if marker.args:
        pytest.fail(f"@pytest.mark.{MARKER} takes keyword arguments only (n=2, seed=..., ...); "
                    f"received {marker.args!r}.", pytrace=False)
    wanted = [name for name in inspect.signature(function).parameters]
    if wanted:
        pytest.fail(f"{pyfuncitem.name} asks for {', '.join(wanted)}, but a test marked "
                    f"@pytest.mark.{MARKER} runs in fresh processes, where pytest fixtures do "
                    "not exist; make it take no arguments.", pytrace=False)
    options = dict(marker.kwargs)
    temporary = None
    if "store" not in options and not os.environ.get("TWINRUN_STORE"):
        temporary = tempfile.mkdtemp(prefix="twinrun-pytest-")
        options["store"] = temporary
    passed = False
    try:
        passed = _check(function, pyfuncitem.name, options)
    finally:
        if temporary is not None and passed:
            shutil.rmtree(temporary, ignore_errors=True)
    return True


def _check(function, name, options):
    """Run the check; fail the test with one line unless the replicas are identical."""
    import twinrun
    from twinrun.errors import TwinrunError
    from twinrun.report.summary import verdict_summary

    try:
        verdict = twinrun.check(function, **options)
    except TwinrunError as error:
        pytest.fail(f"{name} could not be checked: {error}", pytrace=False)
    if not verdict.identical:
        where = next((note for note in verdict.notes if note.startswith("traces and logs")), "")
        pytest.fail(f"{verdict_summary(verdict, label=name)}"
                    + (f" ({where})" if where else ""), pytrace=False)
    return True
