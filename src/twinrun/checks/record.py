"""`twinrun record` and `twinrun check --against`: one run written as a reference file, or
compared with one, step by step.
"""

from dataclasses import replace
from pathlib import Path

from twinrun.checks.entry import check_command, check_workload
from twinrun.checks.identity import command_identity, validate_same_workload, workload_identity
from twinrun.checks.judging import Judging


def record_command(command, output, *, snapshots=False, seed=0, backend=None, **options):
    """Run the user's command once and write its trace as a reference file.

    Arguments:
        command: the argument list, e.g. `["python", "train.py"]`.
        output: the reference file to write (`ref.twinrun`).
        snapshots: keep the per-epoch weight snapshots in the reference.
        seed, backend, **options: as for `check_command` (threads, determinism, store, ...).

    Returns the `Verdict` of the single run, `verdict == "recorded"`.

    Example (it runs train.py once, so it is not run as a doctest):

        record_command(["python", "train.py"], "ref.twinrun", threads=[2])
    """
    judging = Judging(record_to=Path(output), snapshots=snapshots,
                      identity=command_identity(command, seed=seed, backend=backend),
                      findings=options.pop("findings", None),
                      portable=options.get("portable", False))
    return check_command(command, n=1, seed=seed, backend=backend, localize=False,
                         judging=judging, **options)


def record_workload(config, output, *, snapshots=False, **options):
    """Train a built-in workload once and write its trace as a reference file.

    Arguments:
        config: a `RunConfig`.
        output: the reference file to write.
        snapshots: keep the per-epoch weight snapshots in the reference.
        **options: as for `check_workload` (threads, timeout, progress).
    """
    from twinrun.train import prepare

    judging = Judging(record_to=Path(output), snapshots=snapshots,
                      identity=workload_identity(prepare(config)), portable=config.portable)
    return check_workload(config, n=1, localize=False, judging=judging, **options)


def check_command_against(command, reference, *, n=1, tolerance=None, seed=0, backend=None,
                          findings=None, **options):
    """Run the user's command (once by default) and compare it with a reference, step by step.

    Arguments:
        command: the argument list, as recorded.
        reference: a `twinrun.checks.reference.Reference` (`read_reference`).
        n: runs to compare with it.
        tolerance: optional `twinrun.checks.tolerance.Tolerance`.
        findings: static findings to keep in the verdict (`script_findings`).
        seed, backend, **options: as for `check_command`. With `localize` (the default) a
            divergence is rerun twice here, as now and under the reference's recorded
            settings, to name the first operation that differs
            (`twinrun.checks.localize.localize_against_reference`).

    Raises `TwinrunError` before running anything when the reference was recorded from
    another command, seed or backend.

    Example (it runs train.py once, so it is not run as a doctest):

        verdict = check_command_against(["python", "train.py"], read_reference("ref.twinrun"))
        verdict.verdict  # 'identical', 'diverged' or (with a tolerance) 'within_tolerance'
    """
    identity = command_identity(command, seed=seed, backend=backend)
    validate_same_workload(reference, identity)
    judging = Judging(reference=reference, tolerance=tolerance, findings=findings,
                      identity=identity)
    # A portable reference is checked under the settings it was recorded with.
    options["portable"] = options.get("portable", False) or reference.portable
    options.setdefault("localize", "auto")
    return check_command(command, n=n, seed=seed, backend=backend, judging=judging, **options)


def check_workload_against(config, reference, *, n=1, tolerance=None, **options):
    """Train a built-in workload (once by default) and compare it with a reference.

    Arguments:
        config: a `RunConfig` of the workload the reference recorded.
        reference: a `twinrun.checks.reference.Reference`.
        n, tolerance, **options: as for `check_command_against` and `check_workload`.
    """
    from twinrun.train import prepare

    validate_same_workload(reference, workload_identity(prepare(config)))
    judging = Judging(reference=reference, tolerance=tolerance)
    # A portable reference is checked under the settings it was recorded with.
    config = replace(config, portable=config.portable or reference.portable)
    return check_workload(config, n=n, localize=False, judging=judging, **options)
