"""What one MLflow run holds for a twinrun run, check or study, as plain data.

Each `*_fields` function turns a stored record into a `Fields`: the MLflow run's name, params,
metrics (`(key, value, step)`), tags and JSON artifacts. Nothing here imports MLflow; the
exporter (`twinrun.export.mlflow`) only writes what these return.

MLflow's rules are kept here: names may hold only letters, digits, `_ - . : /` and spaces, at
most 250 characters; a param value at most 6,000 characters and a tag value 8,000.
"""

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

# MLflow refuses longer keys and values (mlflow.utils.validation).
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
TAG_PREFIX = "twinrun."

_BAD_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.\- :]")
_STATUSES = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED",
             "running": "RUNNING"}


@dataclass
class Fields:
    """One MLflow run's content: `metrics` are `(key, value, step)`; `artifacts` map a file
    name to a JSON-able value; `status` is MLflow's (FINISHED, FAILED, KILLED, RUNNING);
    `start_ms`/`end_ms` are the record's own times in milliseconds (None where unknown)."""

    name: str
    params: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    tags: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    status: str = "FINISHED"
    start_ms: int | None = None
    end_ms: int | None = None


def mlflow_name(name):
    """`name` as a key MLflow accepts (a param, metric or tag name).

    Example:
    >>> mlflow_name("<script>alert(1)</script>")
    '_script_alert_1___script_'
    >>> mlflow_name("..")
    '_..'
    """
    text = _BAD_NAME_CHARACTERS.sub("_", str(name))[:MAX_KEY] or "_"
    # MLflow refuses names that read as relative paths ("." and "..", "../x").
    return "_" + text[:MAX_KEY - 1] if text.startswith(".") else text


def _text(value, limit):
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _number(value):
    """A metric value, or None for what is not one number (bools, text, lists)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if not math.isinf(value) else None


def _flat(prefix, value, out):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[mlflow_name(prefix)] = _text(value, MAX_PARAM_VALUE)


def _as_printed(verdict):
    """The verdict as `twinrun check --json` prints it, with its `reading` (headline, cause,
    culprit) first, so the MLflow artifact and the terminal's JSON are the same document."""
    from twinrun.report.headline import with_reading

    return with_reading(verdict) if isinstance(verdict, dict) else verdict


def _ms(timestamp):
    if not timestamp:
        return None
    try:
        return int(datetime.fromisoformat(str(timestamp)).timestamp() * 1000)
    except ValueError:
        return None


def _tags(values):
    return {mlflow_name(TAG_PREFIX + key): _text(value, MAX_TAG_VALUE)
            for key, value in values.items() if value is not None and value != ""}


def determinism_summary(report):
    """One line saying what `deterministic()` did, from a stored determinism report.

    Example:
    >>> determinism_summary({"enabled": True, "controls": [
    ...     {"name": "tf.random.set_seed", "state": "applied"},
    ...     {"name": "cuDNN determinism", "state": "not needed"}]})
    'on: 1 applied, 1 not needed'
    """
    if not isinstance(report, dict) or not report:
        return None
    enabled = report.get("enabled", report.get("determinism"))
    switch = {True: "on", False: "off"}.get(enabled, "unknown")
    controls = [c for c in report.get("controls") or [] if isinstance(c, dict)]
    counts = Counter(str(c.get("state")) for c in controls)
    if not counts:
        return switch
    return f"{switch}: " + ", ".join(f"{n} {state}" for state, n in counts.items())


def _environment_tags(environment):
    if not isinstance(environment, dict):
        return {}
    framework = environment.get("framework") if isinstance(environment.get("framework"),
                                                               dict) else {}
    python = environment.get("python") if isinstance(environment.get("python"), dict) else {}
    cpu = environment.get("cpu") if isinstance(environment.get("cpu"), dict) else {}
    name = " ".join(str(framework[key]) for key in ("name", "version") if framework.get(key))
    return {"environment.framework": name, "environment.python": python.get("version"),
            "environment.cpu": cpu.get("model"), "environment.hostname":
            environment.get("hostname")}


def run_fields(run, epochs):
    """The MLflow content of one stored run.

    Arguments:
        run: `Store.get_run`'s record.
        epochs: the run's per-epoch metrics, `[{"epoch": n, name: value, ...}]` (its
            `history`, or its trace's epochs).

    Params: `workload`, `backend`, `seed`, `preset`, the config (`config.*`) and the derived
    seeds (`seeds.*`). Metrics: each epoch's at `step=epoch`, then the final metrics that are
    single numbers and no epoch has. Tags: `twinrun.fingerprint` (the weights), the
    determinism summary, the status and the environment's framework, Python and CPU.
    Artifacts: `determinism.json`, `environment.json` and `metrics.json` (the final metrics
    whole: confusion matrix, per-class scores).

    Example:

        fields = run_fields(store.get_run(run_id), store.get_run(run_id)["history"])
    """
    params = {}
    for key in ("workload", "backend", "seed", "preset"):
        if run.get(key) is not None:
            params[key] = _text(run[key], MAX_PARAM_VALUE)
    _flat("config", run.get("config") or {}, params)
    _flat("seeds", run.get("seeds") or {}, params)
    metrics, seen = [], set()
    for epoch in epochs:
        step = epoch.get("epoch")
        if isinstance(step, bool) or not isinstance(step, int):
            continue
        for key, value in epoch.items():
            number = _number(value)
            if key != "epoch" and number is not None:
                metrics.append((mlflow_name(key), number, step))
                seen.add(mlflow_name(key))
    final = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    last = max((step for _, _, step in metrics), default=0)
    extras = {**final, "epochs_trained": run.get("epochs_trained"),
              "wall_time": run.get("wall_time")}
    for key, value in extras.items():
        number = _number(value)
        if number is not None and mlflow_name(key) not in seen:
            metrics.append((mlflow_name(key), number, last))
    determinism = run.get("determinism")
    tags = _tags({"kind": "run", "run_id": run.get("run_id"), "status": run.get("status"),
                  "fingerprint": run.get("fingerprint"),
                  "determinism": determinism_summary(determinism),
                  "determinism.impossible": ", ".join(
                      str(c.get("name")) for c in (determinism or {}).get("controls") or []
                      if isinstance(c, dict) and c.get("state") == "impossible"),
                  "workload": run.get("workload"), "backend": run.get("backend"),
                  "group_id": run.get("check_id") or run.get("study_id"),
                  "study_key": run.get("study_key"),
                  "error": run.get("error"),
                  **_environment_tags(run.get("environment"))})
    artifacts = {"determinism.json": determinism or {},
                 "environment.json": run.get("environment") or {},
                 "metrics.json": final}
    replica = f" replica {run['replica']}" if run.get("replica") is not None else ""
    return Fields(name=f"{run.get('workload') or 'run'}{replica} {run['run_id']}",
                  params=params, metrics=metrics, tags=tags, artifacts=artifacts,
                  status=_STATUSES.get(run.get("status"), "FINISHED"),
                  start_ms=_ms(run.get("created_at")), end_ms=_ms(run.get("finished_at")))


def check_fields(check, verdict):
    """The MLflow content of one stored check: the parent of its replicas' runs.

    Arguments:
        check: `Store.get_check`'s record without `result`.
        verdict: the verdict, as `twinrun check --json` printed it.

    Tags: `twinrun.verdict` (identical or diverged), `twinrun.first_divergence` (step, epoch
    and where), `twinrun.fingerprints` (the replicas' final ones). Artifact: `verdict.json`.
    """
    first = verdict.get("first_divergence") if isinstance(verdict, dict) else None
    where = None
    if isinstance(first, dict):
        place = first.get("layer") or ", ".join(map(str, (first.get("variables") or [])[:3]))
        where = f"step {first.get('step')} in epoch {first.get('epoch')}" + \
            (f": {place}" if place else "")
    replicas = verdict.get("replicas") or [] if isinstance(verdict, dict) else []
    fingerprints = [str(r.get("fingerprint")) for r in replicas if isinstance(r, dict)]
    growth = [row.get("max_abs_loss_diff") for row in (verdict.get("loss_growth") or [])
              if isinstance(row, dict) and _number(row.get("max_abs_loss_diff")) is not None]
    metrics = [("replicas", float(check.get("replicas") or len(replicas)), 0)]
    if _number(check.get("steps_compared")) is not None:
        metrics.append(("steps_compared", float(check["steps_compared"]), 0))
    if growth:
        metrics.append(("max_abs_loss_diff", float(max(growth)), 0))
    tags = _tags({"kind": "check", "check_id": check["check_id"],
                  "verdict": check.get("verdict"), "check_kind": check.get("kind"),
                  "label": check.get("label"), "first_divergence": where,
                  "fingerprints": ", ".join(fingerprints)})
    params = {"label": _text(check.get("label") or "", MAX_PARAM_VALUE),
              "check_kind": _text(check.get("kind") or "", MAX_PARAM_VALUE),
              "replicas": str(check.get("replicas"))}
    return Fields(name=f"check {check.get('label') or ''} {check['check_id']}".replace("  ", " "),
                  params=params, metrics=metrics, tags=tags,
                  artifacts={"verdict.json": _as_printed(verdict), "check.json": check},
                  start_ms=_ms(check.get("created_at")), end_ms=_ms(check.get("created_at")))


def study_fields(study, summary, counts):
    """The MLflow content of one stored study: the parent of its runs.

    Arguments:
        study: `Store.get_study`'s record.
        summary: the study's statistics (`twinrun.studies.results.variance_results` or
            `cv_results`), or `{"unavailable": sentence}` when there are none yet.
        counts: `{"finished": n, "failed": m}` of its runs.

    Params: the study's definition (`study.*`). Metrics: the summary's single numbers, and each
    source's (`init.sd`, `order.mean`, ...). Tags: `twinrun.study_kind`, `twinrun.metric`,
    the counts. Artifacts: `study.json` (definition and options) and `summary.json`.
    """
    params = {}
    definition = study.get("definition") or {}
    _flat("study", {k: v for k, v in definition.items() if k != "kind"}, params)
    metrics = []
    for key, value in (summary or {}).items():
        number = _number(value)
        if number is not None:
            metrics.append((mlflow_name(key), number, 0))
    for source, line in ((summary or {}).get("sources") or {}).items():
        for key, value in (line or {}).items() if isinstance(line, dict) else ():
            number = _number(value)
            if number is not None:
                metrics.append((mlflow_name(f"{source}.{key}"), number, 0))
    tags = _tags({"kind": "study", "study_id": study["study_id"],
                  "study_kind": study.get("kind"), "study_status": study.get("status"),
                  "metric": (summary or {}).get("metric") or
                  (study.get("options") or {}).get("metric"),
                  "planned": study.get("planned"), "finished": counts.get("finished"),
                  "failed": counts.get("failed"),
                  "summary_unavailable": (summary or {}).get("unavailable")})
    return Fields(name=f"study {study['study_id']}", params=params, metrics=metrics,
                  tags=tags, artifacts={"study.json": study, "summary.json": summary or {}},
                  start_ms=_ms(study.get("created_at")), end_ms=_ms(study.get("updated_at")))
