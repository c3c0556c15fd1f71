"""`twinrun doctor --portable`: does this CPU reproduce twinrun's portable bits?

The probe (`twinrun.workloads.portable_probe`) trains in a fresh process per thread count,
under the settings `--portable` puts in place before start-up, and its digests are compared
with the literals twinrun ships, which two CPU models agreed on (docs/portable.md).
"""

import json
import subprocess

from twinrun.backends import is_installed
from twinrun.errors import TwinrunError

SELF_TEST_THREADS = (1, 2)
SELF_TEST_TIMEOUT_S = 300.0


def portable_selftest(threads=SELF_TEST_THREADS, timeout=SELF_TEST_TIMEOUT_S):
    """Train the portable probe once per thread count in fresh processes and compare each
    with the shipped digests.

    Arguments:
        threads: the thread counts to run at, one fresh process each.
        timeout: seconds one run may take.

    Returns `{"reproduces", "cpu_problem", "expected", "runs", "message"}`: `reproduces` is
    True when every run ended on the shipped bits, False when one did not (its entry in `runs`
    has `first_difference`: the step and tensor), and None when the test could not be made
    (torch missing, another torch version). `message` says it in one sentence.
    """
    from twinrun.launch import child_environment
    from twinrun.seeds import DEFAULT_SEED, derive_seeds
    from twinrun.determinism.common import portable_cpu_problem
    from twinrun.workloads.portable_probe import EXPECTED, first_difference

    problem = portable_cpu_problem()
    result = {"reproduces": None, "cpu_problem": problem,
              "expected": {k: EXPECTED[k] for k in ("torch", "matmul", "trained")},
              "runs": [], "message": ""}
    if not is_installed("torch"):
        result["message"] = ("torch is not installed, so the portable self-test (a torch "
                             "workload) cannot run; `pip install torch` first.")
        return result
    from twinrun.environment.machine import version_or_none

    version = version_or_none("torch")
    if version != EXPECTED["torch"]:
        result["message"] = (f"twinrun's portable bits are pinned for torch {EXPECTED['torch']}, "
                             f"and torch {version} is installed: another version may pick "
                             "other kernels, so this CPU cannot be judged; install torch "
                             f"{EXPECTED['torch']} to run the self-test.")
        return result
    for count in threads:
        env = child_environment("torch", seeds=derive_seeds(DEFAULT_SEED), threads=count,
                                portable=True)
        run = _run_probe(count, env, timeout)
        run["first_difference"] = first_difference(run)
        result["runs"].append(run)
    differing = [r for r in result["runs"] if r["first_difference"] is not None]
    result["reproduces"] = not differing
    counts = " and ".join(str(r["threads"]) for r in result["runs"])
    if not differing:
        result["message"] = (f"This CPU reproduces twinrun's portable bits (torch "
                             f"{version}, trained digest {EXPECTED['trained']} at {counts} "
                             f"thread{'s' if counts != '1' else ''}).")
        return result
    first = differing[0]
    where = first["first_difference"]
    if where["step"] == -1:
        place = "in the lone matrix product, before training"
    elif where["step"] is None:
        place = "in the final weights only"
    else:
        place = f"at step {where['step']}, in tensor {where['tensor']}"
    why = f" ({problem})" if problem else ""
    result["message"] = (f"This CPU does not reproduce twinrun's portable bits{why}: at "
                         f"{first['threads']} thread{'s' if first['threads'] != 1 else ''} the "
                         f"probe parts from them {place} (trained digest {first['trained']}, "
                         f"expected {EXPECTED['trained']}); references recorded with --portable "
                         "elsewhere will not check identical here, so compare with --rtol.")
    return result


def _run_probe(threads, env, timeout):
    from twinrun.launch import program_command

    command = program_command("twinrun.programs.portable_selftest", threads)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TwinrunError(f"The portable self-test did not finish within {timeout:g} s at "
                           f"{threads} threads; the machine may be very busy, try again.") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TwinrunError(f"The portable self-test's process exited with status "
                           f"{done.returncode}: {tail[0]}")
    return json.loads(lines[-1])
