"""Localisation: which layer first turns identical inputs into different outputs.

The replicas are rerun to the first divergent step with every layer's forward input and
output, and every gradient, fingerprinted at that step (`TWINRUN_LOCALIZE_STEP`). The first
layer whose output differs although its input was the same is named; if the forward pass
agrees, the first gradient that differs, in backward order; if every gradient agrees too, the
optimizer slot (or random generator state) that differs first at that step.

A sampled trace (`--trace-every K`) is first placed at its exact step and tensors by a rerun
that traces the whole state at every step since the last sampled step that agreed
(`place_sampled_divergence`).
"""

from twinrun.checks.causes import gpu_used, likely_causes
from twinrun.checks.replicas import run_replicas
from twinrun.checks.verdict import Comparison, compare_step, first_divergence, is_state_name
from twinrun.errors import TwinrunError


def localize_step(traces, step):
    """Name the layer where the rerun `traces` part ways at `step`.

    Returns a dict with `step`, `layer` (None when not found), `where` (`forward`,
    `backward`, or `optimizer` when only the training state outside the model differs),
    `state` (the names of the optimizer slots and random generator states that differ at
    `step`, when no layer is to blame), `rerun_divergence` (the step the rerun itself
    diverged at, or None), `race` (True when the rerun diverged at another step) and a `note`.
    """
    try:
        rerun = first_divergence(traces)
    except TwinrunError:
        rerun = None
    rerun_step = rerun.step if rerun is not None else None
    result = {"step": step, "layer": None, "where": None, "state": [],
              "rerun_divergence": rerun_step,
              "race": rerun_step is not None and rerun_step != step, "note": ""}
    records = [next((r for r in t.layers if r["step"] == step), None) for t in traces]
    if any(r is None for r in records):
        result["note"] = ("The rerun did not reach step "
                          f"{step} in every replica, so no layer could be named.")
        return result
    forward = _first_forward(records)
    if forward is not None:
        result.update(layer=forward, where="forward")
    else:
        backward = _first_backward(records)
        if backward is not None:
            result.update(layer=backward, where="backward")
    if result["race"]:
        result["note"] = (f"The rerun diverged at step {rerun_step}, not {step}: the difference "
                          "is a real race that moves between runs; the earliest step seen is "
                          f"{min(rerun_step, step)}.")
    elif rerun_step is None:
        result["note"] = (f"The rerun did not diverge up to step {step}: the nondeterminism is "
                          "intermittent.")
    elif result["layer"] is None:
        result["state"] = _differing_state(traces, step)
        if result["state"]:
            result["where"] = "optimizer"
            shown = ", ".join(result["state"][:3]) + (" ..." if len(result["state"]) > 3 else "")
            result["note"] = (f"At step {step} every layer output and gradient matched; the "
                              f"first state to differ is {shown}: the difference arises in "
                              "the optimizer update or in code that changes that state "
                              "between steps.")
        else:
            result["note"] = (f"At step {step} every layer output and gradient matched; the "
                              "difference arises in the optimizer update.")
    return result


def _differing_state(traces, step):
    """Names of the optimizer and random generator tensors that differ at `step` (by step
    number) in the rerun traces."""
    rows, names = [], None
    for trace in traces:
        index = trace.steps.index_of_step(step)
        if index is None:
            return []
        rows.append(trace.steps[index])
        names = names if names is not None else trace.names_at(index)
    divergence = compare_step(rows, names)
    if divergence is None:
        return []
    return [n for n in divergence.variables if is_state_name(n)]


def _first_forward(records):
    entries = [r["forward"] for r in records]
    for i in range(min(len(e) for e in entries)):
        row = [e[i] for e in entries]
        inputs = {r.get("input") for r in row}
        outputs = {r.get("output") for r in row}
        if len(inputs) == 1 and len(outputs) > 1:
            return {"name": row[0]["layer"], "class": row[0]["class"], "index": i}
        if len(inputs) > 1:
            # The inputs already differ: the state before this step did, or an earlier
            # layer's output was not captured. Name the first layer that saw the difference.
            return {"name": row[0]["layer"], "class": row[0]["class"], "index": i,
                    "inputs_differed": True}
    return None


def _first_backward(records):
    entries = [r["backward"] for r in records]
    for i in range(min(len(e) for e in entries)):
        row = [e[i] for e in entries]
        if len({r.get("grad") for r in row}) > 1:
            return {"name": row[0]["layer"], "variable": row[0]["variable"],
                    "class": row[0].get("class"), "index": i}
    return None


def localize_divergence(verdict, make_specs, parallel, timeout):
    divergence = verdict.first_divergence
    if divergence.digest is not None:
        verdict.localization = {
            "step": divergence.step, "layer": None,
            "note": (f"Every step's fingerprint words and losses agreed; only the exact digest "
                     f"of the whole state at {_digest_point(divergence.digest)} differs, so no "
                     f"step's layers can be compared.")}
        return
    if divergence.step < 0 or {"data", "batch"} & set(divergence.records):
        verdict.localization = {"step": divergence.step, "layer": None,
                                "note": "The data differed, so no layer is to blame."}
        return
    step = divergence.step

    def reached(reader):
        return any(r["step"] == step for r in reader.trace.layers) or reader.trace.finished

    # A sampled trace records the whole state of this step too (`StateSchedule`).
    outcomes = run_replicas(make_specs({"TWINRUN_LOCALIZE_STEP": str(step),
                                        "TWINRUN_TRACE_DENSE": f"{step}:{step}"}),
                            parallel=parallel, timeout=timeout, stop_when=reached,
                            compare=False)
    result = localize_step([o.reader.trace for o in outcomes], step)
    verdict.localization = result
    if result["layer"] is not None:
        divergence.layer = result["layer"]
    if verdict.reference is None:  # a reference's causes name what changed since it
        environments = [(o.reader.trace.header or {}).get("environment") or {}
                        for o in outcomes]
        verdict.likely_causes = likely_causes(divergence, verdict.environment_diff, result,
                                              gpu_used=gpu_used(environments))
    if result["race"] and result["rerun_divergence"] is not None:
        verdict.notes.append(result["note"])


def trace_every_environment(every):
    """The variables that ask a replica's tracer to fingerprint the whole state every
    `every`-th step (nothing for every step)."""
    from twinrun.trace.recording import StateSchedule

    StateSchedule(every)  # refuses anything but a positive integer
    return {"TWINRUN_TRACE_EVERY": str(every)} if every > 1 else {}


def last_whole_state_step(step, every):
    """The last step before `step` whose whole state a trace sampled every `every` steps
    recorded (-1: none)."""
    return (step // every) * every - 1


def place_sampled_divergence(verdict, make_specs, parallel, timeout, every):
    """Place a sampled trace's divergence at its exact step and tensors.

    A sampled trace (the whole state every `every`-th step; batch and loss every step) sees a
    divergence at step d by its batch, its loss or its sampled words, and knows only that the
    whole state still agreed at the last sampled step s before d. The replicas run again,
    tracing the whole state at every step from s + 1 to d and stopping there; the rerun's
    first difference in that window is the exact first divergence (step and tensors), as an
    every-step trace would have named it. If the rerun differs elsewhere (nondeterminism that
    does not repeat), the sampled result stands and a note says so.
    """
    divergence = verdict.first_divergence
    if verdict.reference is not None or divergence.step < 0 or divergence.digest is not None:
        # A reference cannot run again; the data before step 0 or an exact digest is as
        # exact as a rerun would make it.
        return
    seen = divergence.step
    first = last_whole_state_step(seen, every) + 1
    if first == seen and "variables" in divergence.records:
        return  # the step's own words differ and the one before agreed: already exact

    def reached(reader):
        return len(reader.trace.steps) > seen or reader.trace.finished

    outcomes = run_replicas(make_specs({"TWINRUN_TRACE_DENSE": f"{first}:{seen}"}),
                            parallel=parallel, timeout=timeout, stop_when=reached,
                            compare=False)
    exact = Comparison([o.reader.trace for o in outcomes]).advance(final=True)
    window = f"steps {first} to {seen}" if first < seen else f"step {seen}"
    if exact is None or not first <= exact.step <= seen:
        where = "agreed there" if exact is None else f"differed at step {exact.step} instead"
        verdict.notes.append(
            f"The trace sampled the whole state every {every} steps, so the divergence seen at "
            f"step {seen} may have begun in the state from step {first}; a rerun tracing every "
            f"step of {window} {where} (nondeterminism that does not repeat), so step {seen} "
            f"stands.")
        return
    verdict.first_divergence = exact
    verdict.notes.append(
        f"The trace sampled the whole state every {every} steps and saw the divergence at step "
        f"{seen}; a rerun tracing every step of {window} placed it exactly: step {exact.step}, "
        f"in {', '.join(exact.variables or exact.records)}.")
    verdict.likely_causes = likely_causes(exact, verdict.environment_diff)


def _digest_point(digest):
    """Where a digest was taken, in words: "the run's end (after step 4)", "the end of
    epoch 2 (after step 99)" (epochs counted from 1 there: `epoch 2` is the second)."""
    at = digest["at"]
    return ("the run's end" if at == "end" else f"the end of {at}") + (
        f" (after step {digest['after_step']})")
