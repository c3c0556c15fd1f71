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

    Returns a dict with `step`, `op` (the first ATen operation to differ, see `first_op`; None
    where the framework has no op hook), `layer` (None when not found), `where` (`forward`,
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
    result["op"] = first_op(records)
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
    finest = _finest_place(result["op"], records, traces)
    if finest:
        result["note"] = f"{finest} {result['note']}".strip()
    return result


def _finest_place(op, records, traces):
    """The sentence on the operation: which one, or why the layer is the finest place."""
    if op is not None:
        return describe_op(op)
    if any(r.get("ops") for r in records):
        return ""
    backend = (traces[0].header or {}).get("backend") if traces else None
    names = {"tensorflow": "TensorFlow", "jax": "JAX"}
    if backend in names:
        return (f"{names[backend]} has no hook below the layer, so the layer is the finest "
                "place twinrun can name.")
    return ""


def first_op(records):
    """The first framework operation whose output differs between the rerun replicas' `layers`
    records (`twinrun.torch.ops`), or None: where the frameworks have no op hook (TensorFlow,
    JAX), or every op agreed.

    Returns `{"op", "phase", "module", "file", "line", "code", "index"}` (`phase` is
    `forward`, `backward` or `update`; for a backward op the line is the forward line that
    made it), with `"sequence_differs": True` and each replica's op when the replicas ran
    different operations at that point.
    """
    lists = [r.get("ops") for r in records]
    if not lists or any(not ops for ops in lists):
        return None
    for i in range(min(len(ops) for ops in lists)):
        row = [ops[i] for ops in lists]
        if len({entry.get("op") for entry in row}) > 1:
            return dict(_op_entry(row[0], i), sequence_differs=True,
                        ops=[entry.get("op") for entry in row])
        if len({entry.get("output") for entry in row}) > 1:
            return _op_entry(row[0], i)
    if len({len(ops) for ops in lists}) > 1:
        i = min(len(ops) for ops in lists)
        longer = next(ops for ops in lists if len(ops) > i)
        return dict(_op_entry(longer[i], i), sequence_differs=True)
    return None


def _op_entry(entry, index):
    return {"op": entry.get("op"), "phase": entry.get("phase"), "module": entry.get("module"),
            "file": entry.get("file"), "line": entry.get("line"), "code": entry.get("code"),
            "index": index}


def describe_op(op):
    """One sentence naming the operation, its layer and the user's line.

    Example:
    >>> describe_op({"op": "aten::convolution_backward", "phase": "backward", "module": "0",
    ...              "file": "/x/train.py", "line": 18, "code": "logits = model(images)"})
    'The first operation to differ is aten::convolution_backward (backward, in layer 0), whose forward ran at train.py:18: logits = model(images).'
    """
    import os

    where = f", in layer {op['module']}" if op.get("module") else ""
    text = f"The first operation to differ is {op['op']} ({op.get('phase')}{where})"
    if op.get("file"):
        place = f"{os.path.basename(op['file'])}:{op['line']}"
        code = f": {op['code']}" if op.get("code") else ""
        how = "whose forward ran at" if op.get("phase") == "backward" else "called at"
        text += f", {how} {place}{code}"
    return text + "."


def replay_reproduces(reference_trace, replay_trace, step):
    """Whether a local replay matches the reference's recorded step `step` bit for bit (every
    tensor), so that comparing the replay with this run op by op says where they part."""
    rows, names = [], None
    for trace in (reference_trace, replay_trace):
        index = trace.steps.index_of_step(step)
        if index is None:
            return False
        rows.append(trace.steps[index])
        names = names if names is not None else trace.names_at(index)
    try:
        return compare_step(rows, names) is None
    except (KeyError, TypeError, ValueError, IndexError):
        return False  # the reference kept no words for that step


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


def localize_against_reference(verdict, reference, make_specs, timeout):
    """Name the operation where this run parts from a reference, by replaying the reference here.

    The reference keeps no op records, so the divergent step is rerun twice on this machine:
    as now, and under the reference's recorded numerics variables and thread count (its
    `ATEN_CPU_CAPABILITY`, `MKL_CBWR`, ...). When the replay gives the reference's own bits at
    that step, the two reruns are compared layer by layer and op by op; when it does not (the
    reference came from another CPU model), the verdict says so and names no operation.
    """
    from dataclasses import replace

    from twinrun.environment import NUMERICS_ENV_VARS

    divergence = verdict.first_divergence
    if (divergence.digest is not None or divergence.step < 0
            or {"data", "batch"} & set(divergence.records)):
        return
    step = divergence.step
    now = make_specs({"TWINRUN_LOCALIZE_STEP": str(step)})[0]
    env = dict(now.env)
    recorded = reference.environment.get("env") or {}
    for name in NUMERICS_ENV_VARS:
        if name not in recorded or name == "PYTHONHASHSEED":
            continue
        if recorded[name] is None:
            env.pop(name, None)
        else:
            env[name] = str(recorded[name])
    threads = reference.trace.header.get("threads")
    if threads:
        env["TWINRUN_THREADS"] = str(threads)
    trace = now.trace.with_name(now.trace.name.replace(".trace", ".replay.trace"))
    trace.unlink(missing_ok=True)
    env["TWINRUN_TRACE"] = str(trace)
    replay = replace(now, label="replay of the reference", env=env, trace=trace,
                     log=now.log.with_name(now.log.name.replace(".log", ".replay.log")))

    def reached(reader):
        return any(r["step"] == step for r in reader.trace.layers) or reader.trace.finished

    outcomes = run_replicas([replay, now], parallel=2, timeout=timeout, stop_when=reached,
                            compare=False)
    traces = [o.reader.trace for o in outcomes]
    if not replay_reproduces(reference.trace, traces[0], step):
        verdict.localization["note"] += (
            f" Replayed here under the reference's recorded settings, step {step} did not give "
            "the reference's bits (it was recorded on another CPU or with other versions), so "
            "no operation can be named on this machine.")
        return
    result = localize_step(traces, step)
    result["replayed"] = True
    result["note"] = (f"Replayed here under the reference's recorded settings, which gave its "
                      f"bits at step {step}: " + (result["note"] or ""))
    verdict.localization = result
    if result["layer"] is not None:
        divergence.layer = result["layer"]


def _digest_point(digest):
    """Where a digest was taken, in words: "the run's end (after step 4)", "the end of
    epoch 2 (after step 99)"."""
    at = digest["at"]
    return ("the run's end" if at == "end" else f"the end of {at}") + (
        f" (after step {digest['after_step']})")
