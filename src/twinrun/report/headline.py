"""The one sentence every verdict and study opens with, in every format.

`check_reading(verdict)` and `study_reading(results)` return a small dict (`headline`, and the
evidence it rests on) that the terminal, Markdown and HTML renderings print first, and that
`--json` carries as its `reading` field. Everything here is plain text built from the record:
no markup, no backticks (a page shows names in its own way).

A check's headline:
    Reproducible: 2 replicas, 750 steps, same bits.
    Not reproducible: first differs at step 12 (epoch 1), layer planted_noise; most likely
    cause: unseeded randomness in layer planted_noise (Noise), at train.py:5 (fix: ...).

A study's:
    Test accuracy 0.860 ± 0.017 (SD) over 2 runs. Too few runs to rank sources: about 32
    runs per source would give a 95 % interval of ±0.004 on each source's SD.
"""

import math
import os

# Findings that can explain a difference of each kind, most telling first. A finding the
# check's own hooks already made harmless (a framework the script does not seed: the hooks
# seed it under `twinrun check`) explains nothing about a divergence seen there.
_EXPLAINS_DATA = ("set-order", "hash-seed-in-python", "unseeded-generator",
                  "global-generator-draw", "dataloader-workers", "tf-data-nondeterministic")
_EXPLAINS_MODEL = ("unseeded-generator", "global-generator-draw", "cudnn-benchmark",
                   "tf-data-nondeterministic", "tf1-api")
_EXPLAINS_STATE = ("global-generator-draw", "unseeded-generator")

# Below this many runs an interval is too wide to act on, and every one says so.
FEW_RUNS = 5


# -- checks ------------------------------------------------------------------------------------

def check_reading(verdict):
    """The headline of a check's verdict (`Verdict.to_dict()`), with the finding behind it.

    Returns `{"headline": str, "cause": str | None, "culprit": dict | None}`: `culprit` is the
    finding that explains the divergence (`file`, `line`, `where` as `file:line`, `code`,
    `title`, `fix`), when one does.

    Example:
    >>> check_reading({"verdict": "identical", "replicas": [{}, {}],
    ...                "steps_compared": 750})["headline"]
    'Reproducible: 2 replicas, 750 steps, same bits.'
    """
    state = verdict.get("verdict")
    replicas = verdict.get("replicas") or []
    steps = verdict.get("steps_compared") or 0
    against = verdict.get("reference")
    if state == "recorded":
        return _reading(f"Recorded: {steps} steps written as a reference"
                        + (f" to {against.get('path')}." if against and against.get("path")
                           else "."))
    who = (f"the run{'s' if len(replicas) > 2 else ''} and the reference" if against
           else f"{len(replicas)} replicas")
    if state == "identical":
        return _reading(f"Reproducible: {who}, {steps} steps, same bits.")
    if state == "within_tolerance":
        tolerance = verdict.get("tolerance") or {}
        bounds = ", ".join(f"{k} {tolerance[k]:g}" for k in ("rtol", "atol")
                           if isinstance(tolerance.get(k), (int, float)))
        return _reading(f"Reproducible within tolerance: {who}, {steps} steps; the bits "
                        f"differ, but every loss and weight stays within "
                        f"{bounds or 'the tolerance'}.")
    divergence = verdict.get("first_divergence") or {}
    parts = [f"Not reproducible: first differs {_place(divergence)}"]
    layer = divergence.get("layer") or {}
    if layer.get("name") is not None:
        kind = f" ({layer['class']})" if layer.get("class") and not layer.get("op") else ""
        parts.append(f", {'op' if layer.get('op') else 'layer'} {layer['name']}{kind}")
    causes = verdict.get("likely_causes") or []
    cause = _cause_name(causes[0]) if causes else None
    culprit = explaining_finding(verdict)
    if cause:
        parts.append(f"; most likely cause: {cause}")
    if culprit:
        parts.append(f"{',' if cause else ';'} at {culprit['where']} (fix: "
                     f"{_sentence_end(culprit['fix'])})")
    return _reading("".join(parts) + ".", cause=cause, culprit=culprit)


def with_reading(verdict):
    """The verdict dict with its `reading` (`check_reading`) first: what `--json` prints.

    Example:
    >>> list(with_reading({"verdict": "identical", "replicas": [], "steps_compared": 1}))[0]
    'reading'
    """
    rest = {key: value for key, value in verdict.items() if key != "reading"}
    return {"reading": check_reading(rest), **rest}


def verdict_with_reading_json(text):
    """A verdict's JSON text (as stored) as `--json` prints it: with its `reading` first."""
    import json

    return json.dumps(with_reading(json.loads(text)), default=float)


def _reading(headline, *, cause=None, culprit=None):
    return {"headline": headline, "cause": cause, "culprit": culprit}


def _place(divergence):
    step = divergence.get("step")
    if step is None:
        return "somewhere"
    if step < 0:
        return "in the training data, before step 0"
    epoch = divergence.get("epoch")
    return f"at step {step}" + ("" if epoch is None else f" (epoch {epoch})")


def _cause_name(cause):
    """A likely cause's short name: its text up to the first colon, lower-cased."""
    name = cause.split(":", 1)[0].strip()
    if len(name) > 90:
        name = name[:89].rstrip() + "…"
    return name[:1].lower() + name[1:] if name[:2] != name[:2].upper() else name


def _sentence_end(text):
    return str(text).strip().rstrip(".")


def explaining_finding(verdict):
    """The finding (lint's or the hooks') that explains where the replicas parted, or None.

    A difference in the data is explained by a finding about order or unseeded draws, a
    difference inside the model by an unseeded generator or a nondeterministic kernel switch.
    """
    findings = [f for f in verdict.get("findings") or [] if isinstance(f, dict)]
    divergence = verdict.get("first_divergence")
    if not findings or not divergence:
        return None
    records = set(divergence.get("records") or [])
    if {"data", "batch"} & records or (divergence.get("step") or 0) < 0:
        rules = _EXPLAINS_DATA
    elif records == {"variables"} and all(str(v).startswith(("optimizer/", "rng/"))
                                          for v in divergence.get("variables") or []):
        rules = _EXPLAINS_STATE
    else:
        rules = _EXPLAINS_MODEL
    for rule in rules:
        for finding in findings:
            if finding.get("rule") == rule:
                return _culprit(finding)
    return None


def _culprit(finding):
    where = finding_place(finding)
    return {"rule": finding.get("rule"), "file": finding.get("file"),
            "line": finding.get("line"), "where": where, "code": finding.get("code"),
            "title": finding.get("title"), "fix": finding.get("fix")}


def finding_place(finding):
    """Where a finding is: `file:line`, or in a notebook its cell and the line in it.

    Example:
    >>> finding_place({"file": "nb.ipynb", "cell": 3, "cell_title": "import os", "line": 2})
    'nb.ipynb, cell 3 (`import os`), line 2'
    """
    if finding.get("cell") is None and finding.get("cell_label") is None:
        return source_place(finding.get("file"), finding.get("line"))
    from twinrun.notebooks.reading import describe_cell

    cell = describe_cell(finding.get("cell"), finding.get("cell_title"),
                         finding.get("cell_label"))
    return f"{source_place(finding.get('file'), None)}, {cell}, line {finding.get('line')}"


def source_place(file, line):
    """`file:line` as a person would type it: the file relative to this folder when inside it.

    Example:
    >>> source_place(os.path.join(os.getcwd(), "train.py"), 5)
    'train.py:5'
    """
    if not file:
        return f"line {line}"
    shown = str(file)
    try:
        relative = os.path.relpath(shown)
        if not relative.startswith(".."):
            shown = relative
    except ValueError:
        pass
    return f"{shown}:{line}" if line is not None else shown


# -- studies -----------------------------------------------------------------------------------

def metric_name(metric):
    """A metric's name in words, capitalised: `test_accuracy` -> `Test accuracy`.

    Example:
    >>> metric_name("best_val_loss")
    'Best val loss'
    """
    words = str(metric).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def study_reading(results):
    """The headline of a variance study or a CV (`studies.results.variance_results` or
    `cv_results`): the metric's mean ± SD over the runs, and what more runs would buy.

    Returns `{"headline": str, "runs": n, "few_runs": bool, "runs_needed": N,
    "half_width_then": x}`.

    Example:
    >>> study_reading({"kind": "cv", "metric": "test_accuracy", "mean": 0.86, "sd": 0.017,
    ...                "cross_validate": {"test_accuracy": [0.848, 0.872]}})["headline"]
    'Test accuracy 0.860 ± 0.017 (SD) over 2 runs. Too few runs for a useful interval: about 18 runs would give a 95 % interval of ±0.008.'
    """
    from twinrun.studies.stats import runs_for_mean, runs_for_sd

    metric = metric_name(results.get("metric") or "metric")
    if "sources" in results:
        sources = results.get("sources") or {}
        line = sources.get("all") or next(iter(sources.values()), {}) or {}
        n, mean, sd = line.get("n") or 0, line.get("mean"), line.get("sd")
        fewest = min((s.get("n") or 0 for s in sources.values()), default=0)
        varied = "" if "all" in sources or len(sources) != 1 else \
            f" varying {next(iter(sources))}"
        opening = f"{metric} {_num(mean)} ± {_num(sd)} (SD) over {n} runs{varied}."
        sds = [s.get("sd") for s in sources.values() if s.get("sd")]
        typical = (sum(sds) / len(sds)) if sds else None
        if fewest < FEW_RUNS:
            needed, half = runs_for_sd(typical)
            scope = "rank sources" if len(sources) > 1 or "all" not in sources else \
                "size the spread"
            tail = (f" Too few runs to {scope}: about {needed} runs per source would give a "
                    f"95 % interval of ±{_num(half)} on each source's SD.")
            return _study(opening + tail, n, True, needed, half)
        ranked = sorted(((s.get("sd") or 0.0, name) for name, s in sources.items()
                         if name != "all"), reverse=True)
        tail = (f" Largest source of spread: {ranked[0][1]} (SD {_num(ranked[0][0])})."
                if ranked else "")
        return _study(opening + tail, n, False, None, None)
    values = (results.get("cross_validate") or {}).get(results.get("metric")) or []
    n = len(values) or results.get("finished") or 0
    mean, sd = results.get("mean"), results.get("sd")
    opening = f"{metric} {_num(mean)} ± {_num(sd)} (SD) over {n} runs."
    if n < FEW_RUNS:
        needed, half = runs_for_mean(sd)
        return _study(opening + f" Too few runs for a useful interval: about {needed} runs "
                                f"would give a 95 % interval of ±{_num(half)}.",
                      n, True, needed, half)
    return _study(opening, n, False, None, None)


def few_runs_warning(n, sd, *, per_source=False):
    """The warning every interval from fewer than `FEW_RUNS` runs carries, or None.

    Example:
    >>> few_runs_warning(2, 0.02)
    'Only 2 runs: this interval is too wide to act on; about 18 runs would give ±0.010.'
    """
    from twinrun.studies.stats import runs_for_mean

    if n is None or n >= FEW_RUNS:
        return None
    needed, half = runs_for_mean(sd)
    each = " per source" if per_source else ""
    return (f"Only {n} runs{each}: this interval is too wide to act on; about {needed} runs"
            f"{each} would give ±{_num(half)}.")


def _study(headline, n, few, needed, half):
    return {"headline": headline, "runs": n, "few_runs": few, "runs_needed": needed,
            "half_width_then": half}


def _num(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    magnitude = abs(value)
    if magnitude and magnitude < 1e-3:
        return f"{value:.2e}"
    return f"{value:.3f}"


def variance_table_notes(results):
    """The sentences under a variance table: how its intervals were made, the few-runs warning
    they all carry, what `effect` means, and why each blank column is blank.

    Example:
    >>> notes = variance_table_notes({"metric": "test_accuracy", "sources": {"init": {
    ...     "n": 2, "sd": 0.0146, "share": None, "effect": True, "disagreement": None,
    ...     "floor_sd": None, "tests": {"ci95": "Student t on the logit scale"}}}})
    >>> [note.split(":")[0] for note in notes]
    ['Intervals', 'Warning', 'effect', 'share of all', 'disagree', 'floor SD']
    """
    sources = results.get("sources") or {}
    lines = list(sources.values())
    notes = [_interval_methods(lines)]
    fewest = min((line.get("n") or 0 for line in lines), default=0)
    sds = [line.get("sd") for line in lines if line.get("sd")]
    if fewest < FEW_RUNS:
        warning = few_runs_warning(fewest, max(sds) if sds else None, per_source=True)
        notes.append(f"Warning: every interval marked * rests on fewer than {FEW_RUNS} runs. "
                     + warning)
    notes.append("effect: yes when the source's runs ended with different "
                 + _effect_basis(lines) + " (the source changes the result); no effect here "
                 "when they all ended the same, so its spread is not a measurement.")
    if any(line.get("share") is None for line in lines):
        why = ("the study has no all runs (add all to --vary to get it)" if "all" not in sources
               else "a source with fewer than 2 finished runs, or no spread in the all runs, "
                    "has no share")
        notes.append(f"share of all: the source's variance over the variance of runs that "
                     f"vary every source at once; blank where {why}.")
    if any(line.get("disagreement") is None for line in lines):
        notes.append("disagree: the share of test images two runs predict differently; blank "
                     "where the runs kept no test predictions (script studies) or a source has "
                     "one run.")
    if any(line.get("floor_sd") is None for line in lines):
        notes.append("floor SD: the SD test-set sampling alone would give; blank for metrics "
                     "other than accuracy, or without the runs' test predictions.")
    return notes


def _interval_methods(lines):
    methods = sorted({str((line.get("tests") or {}).get("ci95")) for line in lines
                      if (line.get("tests") or {}).get("ci95")})
    boot = sorted({str((line.get("tests") or {}).get("ci95_bootstrap")) for line in lines
                   if (line.get("tests") or {}).get("ci95_bootstrap")})
    said = "Intervals: 95 % CI of the mean, " + (" / ".join(methods) or "Student t")
    if any("logit" in m for m in methods):
        said += " (an accuracy's interval stays within [0, 1])"
    if boot:
        said += "; " + " / ".join(boot) + " over the runs"
    return said + "."


def _effect_basis(lines):
    bases = {line.get("effect_basis") for line in lines if line.get("effect_basis")}
    return " or ".join(sorted(bases)) if bases else "weights fingerprints"


def cv_interval_notes(results):
    """The sentences under a CV's numbers: the intervals' methods, and the few-runs warning.

    Example:
    >>> cv_interval_notes({"mean": 0.6, "sd": 0.02, "cross_validate": {"test_accuracy":
    ...     [0.58, 0.61]}, "metric": "test_accuracy", "tests": {}})[1][:27]
    'Warning: both intervals res'
    """
    tests = results.get("tests") or {}
    notes = [f"Intervals: 95 % CI of the mean, {tests.get('ci95') or 'Student t'} over folds; "
             f"corrected: {tests.get('ci95_corrected') or 'Nadeau & Bengio'}, which widens it "
             f"for the training data the folds share."]
    values = (results.get("cross_validate") or {}).get(results.get("metric")) or []
    warning = few_runs_warning(len(values), results.get("sd"))
    if warning:
        notes.append(f"Warning: both intervals rest on fewer than {FEW_RUNS} runs. " + warning)
    return notes


# -- doctor ------------------------------------------------------------------------------------

def doctor_headline(environment, audits, portable=None):
    """`twinrun doctor`'s one line: which backends are deterministic here, their thread pools,
    the GPU, and whether runs here are portable (None: not checked; `doctor --portable` says).

    Example:
    >>> doctor_headline({"gpu": {"devices": []}}, [
    ...     {"backend": "torch", "threads": {"intra_op": 2, "inter_op": 2},
    ...      "controls": [{"name": "torch.manual_seed", "state": "applied"}]},
    ...     {"backend": "jax", "error": "not installed"}])
    'Deterministic here: torch (threads 2 intra-op, 2 inter-op); jax not installed; no GPU; portability not checked (doctor --portable tests it).'
    """
    good, bad, missing = [], [], []
    for audit in audits:
        name = audit.get("backend")
        if audit.get("error") == "not installed":
            missing.append(name)
        elif audit.get("error"):
            bad.append(f"{name} (audit failed)")
        elif any(c.get("state") == "impossible" for c in audit.get("controls") or []):
            impossible = [c.get("name") for c in audit.get("controls") or []
                          if c.get("state") == "impossible"]
            bad.append(f"{name} (impossible: {', '.join(map(str, impossible))})")
        else:
            good.append(f"{name}{_threads_words(audit.get('threads'))}")
    parts = [("Deterministic here: " + ", ".join(good)) if good else
             "Deterministic here: no backend"]
    if bad:
        parts.append("not deterministic: " + ", ".join(bad))
    if missing:
        parts.append(", ".join(missing) + " not installed")
    gpu = (environment or {}).get("gpu") or {}
    devices = gpu.get("devices") or []
    parts.append("GPU: " + ", ".join(str(d.get("name", d)) if isinstance(d, dict) else str(d)
                                      for d in devices) if devices else "no GPU")
    parts.append("portability not checked (doctor --portable tests it)" if portable is None else
                 ("portable" if portable else "not portable"))
    return "; ".join(parts) + "."


def _threads_words(threads):
    if not isinstance(threads, dict):
        return ""
    said = [f"{threads[k]} {word}" for k, word in (("intra_op", "intra-op"),
                                                   ("inter_op", "inter-op"))
            if threads.get(k) is not None]
    return f" (threads {', '.join(said)})" if said else ""
