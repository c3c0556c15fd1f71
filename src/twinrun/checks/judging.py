"""From the replicas' outcomes to the `Verdict`: replica against replica (`build_verdict`),
against a reference file (`reference_verdict`), within a tolerance (`apply_tolerance`), or
written as a reference (`twinrun record`).

`check_command` and `check_workload` take a `Judging` (`judging=`): how their runs are judged
besides replica against replica. One run can be written as a reference (`record_command`,
`record_workload`), or compared with one (`check_command_against`, `check_workload_against`);
with a tolerance the runs train to their end and may be `within_tolerance`.
"""

from dataclasses import dataclass
from pathlib import Path

from twinrun.checks.causes import (environment_changes, gpu_used, layer_of, likely_causes,
                                   loss_growth, reference_causes, weight_distance)
from twinrun.checks.findings import dynamic_findings
from twinrun.checks.planning import plan_note
from twinrun.checks.verdict import (DIVERGED, IDENTICAL, WITHIN_TOLERANCE, Comparison, Verdict,
                                    first_divergence, with_exact_digests)
from twinrun.errors import TwinrunError
from twinrun.fingerprint import words_to_hex


def build_verdict(outcomes, results, plan=None):
    """Compare the replicas' traces and assemble the `Verdict`.

    The traces were compared as they grew (`run_replicas`), so `first_divergence` goes on from
    where that comparison stopped and only the losses and last records are read here.

    Arguments:
        outcomes: the `ReplicaOutcome`s, replica 0 first.
        results: each replica's result dict (built-in workloads) or None.
        plan: the `ReplicaPlan` they ran by, said in the verdict's notes.
    """
    from twinrun.environment import environment_diff

    traces = [o.reader.trace for o in outcomes]
    for o in outcomes:
        if not o.reader.trace.steps and not o.stopped:
            raise TwinrunError(f"{o.spec.label.capitalize()} recorded no training step in its trace.")
    divergence = first_divergence(traces)
    environments = [_comparable_environment(t.header) for t in traces]
    env_diff = environment_diff(environments)
    replicas = []
    for outcome, trace, result in zip(outcomes, traces, results):
        last = trace.steps[-1] if trace.steps else None
        entry = {
            "label": outcome.spec.label,
            "steps": len(trace.steps),
            "stopped_early": outcome.stopped,
            "fingerprint": (result or {}).get("fingerprint") or _final_fingerprint(trace),
            "final_loss": last.get("loss") if last else None,
            "metrics": _metrics(trace, result),
        }
        if result and result.get("run_id"):
            entry["run_id"] = result["run_id"]
        replicas.append(entry)
    verdict = Verdict(
        verdict=IDENTICAL if divergence is None else DIVERGED,
        steps_compared=min(len(t.steps) for t in traces),
        replicas=replicas, first_divergence=divergence, environment_diff=env_diff)
    if divergence is not None:
        verdict.loss_growth = loss_growth(traces, divergence.step)
        verdict.likely_causes = likely_causes(divergence, env_diff,
                                              gpu_used=gpu_used(environments))
    verdict.weight_distance = weight_distance(traces)
    if plan is not None:
        verdict.notes.append(plan_note(plan, any(o.stopped for o in outcomes)))
    return verdict


def _final_fingerprint(trace):
    """A script run's final fingerprint: the exact digest of its whole state at its end, or
    (a trace without one) the hex of its last step's words."""
    ends = [d for d in trace.digests if d["at"] == "end"]
    if ends:
        return ends[-1]["digest"]
    last = trace.steps[-1] if trace.steps else None
    return words_to_hex(last["variables"]) if last and last["variables"] is not None else None


def _comparable_environment(header):
    environment = dict(header.get("environment") or {})
    environment["process"] = {k: header.get(k) for k in
                              ("hash_seed", "hash_probe", "determinism", "threads")}
    return environment


def _metrics(trace, result):
    metrics = dict(trace.epochs[-1]["metrics"]) if trace.epochs else {}
    for key in ("test_accuracy", "test_loss", "loss", "acc", "val_loss", "val_acc",
                "epochs_trained"):
        if result and key in result:
            metrics[key] = result[key]
    return metrics


RECORDED = "recorded"


@dataclass
class Judging:
    """How a check's runs are judged.

    Arguments:
        reference: a `twinrun.checks.reference.Reference`: compare the run(s) with it.
        tolerance: a `twinrun.checks.tolerance.Tolerance`: bits may differ within it.
        record_to: write the single run as a reference file here (`twinrun record`).
        identity: what is run (`command_identity`, `workload_identity`), kept in a reference.
        snapshots: keep the per-epoch weight snapshots in the reference.
        findings: static findings in the script (`script_findings`), kept in the verdict.
        portable: the `--portable` settings the recorded run had, kept in a reference.
    """

    reference: object = None
    tolerance: object = None
    record_to: Path | None = None
    identity: dict | None = None
    snapshots: bool = False
    findings: list = None
    portable: bool = False

    @property
    def single(self):
        """One run is enough: it is compared with a file, or becomes one."""
        return self.reference is not None or self.record_to is not None

    @property
    def whole_runs(self):
        """The runs must train to their end (no lockstep stop at the first difference)."""
        return self.single or self.tolerance is not None


def minimum_replicas(judging):
    return 1 if judging is not None and judging.single else 2


def judged_lockstep(judging, lockstep):
    """The lockstep setting a check runs with: a tolerance needs whole runs, and a reference
    file cannot be held back step by step."""
    if judging is None or not judging.whole_runs:
        return lockstep
    if lockstep:
        raise TwinrunError("--lockstep stops the replicas at their first difference, but "
                           + ("--rtol needs every step of every run" if judging.tolerance
                              else "a reference is compared once the run has finished")
                           + "; drop --lockstep.")
    return False


def compared_while_running(judging):
    """Whether the replicas are compared with each other as they run (and their compared
    words freed): not when they are compared with a reference afterwards."""
    return judging is None or judging.reference is None


def judge_outcomes(judging, outcomes, results, plan):
    """The verdict of a check's outcomes, as `judging` asks (`build_verdict` without one)."""
    if judging is not None and judging.reference is not None:
        verdict = reference_verdict(judging.reference, outcomes, results, plan,
                                    judging.tolerance, judging.identity)
    else:
        verdict = build_verdict(outcomes, results, plan)
        if judging is not None and judging.tolerance is not None:
            apply_tolerance(verdict, [o.reader.trace for o in outcomes], judging.tolerance)
    if judging is not None and judging.record_to is not None:
        trace = outcomes[0].reader.trace
        from twinrun.checks.reference import write_reference

        write_reference(judging.record_to, trace, judging.identity,
                        environment=trace.header.get("environment") or {},
                        snapshots=judging.snapshots,
                        portable=portable_settings(judging.identity) if judging.portable
                        else None)
        verdict.verdict = RECORDED
        verdict.reference = {"path": str(judging.record_to), "identity": judging.identity,
                             "steps": len(trace.steps)}
    verdict.findings = list((judging.findings if judging is not None else None) or [])
    verdict.findings += dynamic_findings([o.spec.trace for o in outcomes])
    return verdict


def apply_tolerance(verdict, traces, tolerance):
    """Judge `verdict` (built from `traces`, the first compared against) by `tolerance`: a
    divergence whose losses and weights all stay within it becomes `within_tolerance`."""
    from twinrun.checks.tolerance import judge

    result = judge(traces, verdict.weight_distance, tolerance)
    verdict.tolerance = tolerance.to_dict()
    verdict.max_loss_difference = result.max_loss_difference
    verdict.max_weight_distance = result.max_weight_distance
    if verdict.verdict == DIVERGED and result.within:
        verdict.verdict = WITHIN_TOLERANCE
    if verdict.verdict == DIVERGED and result.reasons:
        verdict.notes.append("Not within tolerance: " + "; ".join(result.reasons) + ".")
    return result


def reference_verdict(reference, outcomes, results, plan=None, tolerance=None, identity=None):
    """Compare the run(s) of `outcomes` with a reference, step by step: the verdict names the
    first divergent step and tensor, and what changed in the environment since the recording.

    Arguments:
        reference: a `twinrun.checks.reference.Reference`.
        outcomes: the runs' `ReplicaOutcome`s (traces read whole: not compared as they ran).
        results: each run's result dict (built-in workloads) or None.
        plan: the `ReplicaPlan` they ran by.
        tolerance: optional `twinrun.checks.tolerance.Tolerance`.
        identity: what ran now (`command_identity`), to say whether the script changed.
    """
    from twinrun.environment import environment_diff

    for o in outcomes:
        if not o.reader.trace.steps:
            raise TwinrunError(f"{o.spec.label.capitalize()} recorded no training step in its "
                               f"trace.")
    reference.extract_snapshots(Path(outcomes[0].spec.trace).parent)
    traces = [reference.trace] + [o.reader.trace for o in outcomes]
    entries = [_reference_entry(reference)]
    for outcome, result in zip(outcomes, results):
        trace = outcome.reader.trace
        last = trace.steps[-1]
        entries.append({"label": outcome.spec.label, "steps": len(trace.steps),
                        "stopped_early": outcome.stopped,
                        "fingerprint": (result or {}).get("fingerprint")
                        or _final_fingerprint(trace),
                        "final_loss": last.get("loss"), "metrics": _metrics(trace, result)})
        if result and result.get("run_id"):
            entries[-1]["run_id"] = result["run_id"]
    divergence = with_exact_digests(traces, Comparison(traces).advance(final=True))
    lengths = [len(t.steps) for t in traces]
    if divergence is None and len(set(lengths)) > 1:
        raise TwinrunError(
            f"This run trained {lengths[1]} steps and the reference {lengths[0]}, agreeing on "
            f"every step they share; run the training the reference recorded (the same "
            f"epochs and data), or record the reference again.")
    env_diff = environment_diff([_comparable_environment(t.header) for t in traces])
    verdict = Verdict(verdict=IDENTICAL if divergence is None else DIVERGED,
                      steps_compared=min(lengths), replicas=entries,
                      first_divergence=divergence, environment_diff=env_diff)
    verdict.reference = reference.summary()
    verdict.environment_changes = environment_changes(env_diff)
    if divergence is not None:
        verdict.loss_growth = loss_growth(traces, divergence.step)
        verdict.likely_causes = reference_causes(divergence, env_diff)
        owner = layer_of(divergence.variables)
        verdict.localization = {
            "step": divergence.step, "layer": None, "owner": owner,
            "note": (f"The first tensors to differ belong to layer {owner}; a reference keeps "
                     f"no layer outputs, so no rerun localised it further." if owner else
                     "A reference keeps no layer outputs, so no rerun localised the layer.")}
    verdict.weight_distance = weight_distance(traces)
    if divergence is not None:
        verdict.notes.append(_portability_note(reference))
    recorded_sha = reference.identity.get("script_sha256")
    now_sha = (identity or {}).get("script_sha256")
    if recorded_sha and now_sha and recorded_sha != now_sha:
        verdict.notes.append(f"The script {reference.identity.get('script')} changed since the "
                             f"reference was recorded (its contents differ).")
    if tolerance is not None:
        apply_tolerance(verdict, traces, tolerance)
    if plan is not None and len(outcomes) > 1:
        verdict.notes.append(plan_note(plan, any(o.stopped for o in outcomes)))
    return verdict


def portable_settings(identity):
    """What a reference recorded with `--portable` keeps: the variables that were set (those
    of its backend, or of every backend a script was prepared for)."""
    from twinrun.backends import KERAS_BACKENDS
    from twinrun.determinism import portable_variables

    backends = [identity["backend"]] if (identity or {}).get("backend") else KERAS_BACKENDS
    variables = {}
    for backend in backends:
        variables.update(portable_variables(backend))
    return {"variables": variables}


def _portability_note(reference):
    """What the verdict of a run that moved away from `reference` says about portability."""
    if reference.portable:
        return ("The reference was recorded with --portable and this run had the same settings; "
                "run `twinrun doctor --portable` here: a CPU that fails the self-test (or lacks "
                "AVX2) cannot reproduce portable bits, while one that passes points at the "
                "changes listed instead (versions, threads, the script).")
    return ("The reference was not recorded with --portable, so its bits are those of the CPU "
            "it was recorded on: record it again with `twinrun record --portable` (torch and "
            "Keras on torch; the same --threads) to check it on other CPUs, or compare with "
            "--rtol.")


def _reference_entry(reference):
    trace = reference.trace
    last = trace.steps[-1]
    return {"label": "reference", "steps": len(trace.steps), "stopped_early": False,
            "fingerprint": words_to_hex(last["variables"]) if last["variables"] else None,
            "final_loss": last.get("loss"), "metrics": _metrics(trace, None)}
