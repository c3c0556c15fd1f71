"""What a study runs: the sources of randomness it varies, and each run's settings.

A variance study varies one source at a time; the others stay at the study's base seed:

| source           | what changes per run                                           | determinism |
|------------------|----------------------------------------------------------------|-------------|
| `init`           | the derived seed `init` (weight initialisers)                  | on          |
| `order`          | the derived seed `shuffle` (the order of training batches)     | on          |
| `dropout`        | the derived seed `dropout` (dropout masks)                     | on          |
| `split`          | `split_seed`: the train/validation split's `random_state`      | on          |
| `perturb`        | nothing but `perturb_seed`: which first-layer weight moves by  | on          |
|                  | one ulp (or which half gets `--set perturb` noise)             |             |
| `nondeterminism` | nothing: every run has the same seeds, determinism is off      | off         |
| `all`            | every derived seed and `split_seed` (a fresh run seed per run) | off         |

`all` is what a user who fixes nothing would see, so it also leaves determinism off; it has no
`perturb_seed`, because a one-ulp nudge is invisible beside a new initialisation.

Run `i` of source `s` draws its varied seed from the study's base seed with the same hash as
`twinrun.seeds` (`seed_for(base_seed, f"study:{s}:{i}")`), so a crossed design's level `j` of
`init` is exactly run `j` of a one-source `init` study with the same base seed.

A crossed design (`design="crossed"`, two sources) runs the full grid: `runs` levels of each
source, `runs ** 2` runs, one per cell.

The plan is plain data; its study id is a short hash of its canonical JSON, so running the
same command again finds the same study and runs only what is missing. This module is pure
Python (no NumPy) so the CLI can validate a command before anything heavy is imported.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field

from twinrun.errors import TwinrunError
from twinrun.seeds import derive_seeds, seed_for, validate_seed
from twinrun.workloads.settings import validate_settings

STUDY_SOURCES = ("init", "order", "dropout", "split", "perturb", "nondeterminism", "all")
DEFAULT_SOURCES = ("init", "order", "dropout", "split", "all")
DESIGNS = ("one-at-a-time", "crossed")

# The derived seed (`twinrun.seeds.SOURCES`) behind each study source that has one.
DERIVED_SEED = {"init": "init", "order": "shuffle", "dropout": "dropout"}

# Bump when the plan's meaning changes, so an old study id never names a different plan.
PLAN_VERSION = 1


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: which source it varies, at which level, and with what seeds.

    Arguments:
        key: the run's name within its study, stable across re-runs (`"init/3"`,
            `"init=2,order=5"`, `"repeat=0,fold=3"`).
        position: its index in the plan (used as the run's `replica` in the store).
        source: the source it varies (`"init"`, ..., `"all"`), `"crossed"` or `"cv"`.
        levels: `{source: index}`: one entry for a one-source run, two for a crossed cell.
        seed: the study's base seed (the run seed every unvaried source derives from).
        seed_overrides: `{derived source: seed}` for `RunConfig.seed_overrides`.
        determinism: False for `nondeterminism` and `all`.
        split_seed: the train/validation split's `random_state`; None keeps the workload's
            own (42 for the Fashion-MNIST CNN).
        perturb_seed: the seed that picks which weight(s) `perturb` changes; None: no change.
        fold: `{"n_splits", "index", "random_state"}` for a cross-validation run, else None.
        settings: the study's `--set` values, the same for every run.
    """

    key: str
    position: int
    source: str
    levels: dict
    seed: int
    seed_overrides: dict
    determinism: bool = True
    split_seed: int | None = None
    perturb_seed: int | None = None
    fold: dict | None = None
    settings: dict = field(default_factory=dict)

    @property
    def seeds(self):
        """Every derived seed of this run, `{source: seed}` (see `twinrun.seeds`)."""
        return derive_seeds(self.seed, self.seed_overrides)

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class StudyPlan:
    """A study's definition and its runs, in a fixed order.

    Arguments:
        study_id: a short hash of `definition` (see `study_id`).
        kind: `"variance"` or `"cv"`.
        definition: the canonical description the id is derived from.
        runs: the `PlannedRun`s.
    """

    study_id: str
    kind: str
    definition: dict
    runs: tuple

    @property
    def sources(self):
        return tuple(self.definition.get("sources", ()))

    def runs_of(self, source):
        """The planned runs that vary `source` (a one-source study)."""
        return [run for run in self.runs if run.source == source]

    def missing(self, done_keys):
        """The planned runs whose keys are not in `done_keys` (what a resume still runs)."""
        done = set(done_keys)
        return [run for run in self.runs if run.key not in done]

    def to_dict(self):
        return {"study_id": self.study_id, "kind": self.kind, "definition": self.definition,
                "runs": [run.to_dict() for run in self.runs]}


def parse_sources(value):
    """A `--vary` value as a tuple of sources, in the vocabulary's order, without repeats.

    Arguments:
        value: a comma list (`"init,order"`), an iterable of names, or None for the default
            (`init, order, dropout, split, all`).

    The order is canonical (the vocabulary's, not the user's) so that `--vary order,init` and
    `--vary init,order` name the same study.

    Example:
    >>> parse_sources("order, init,order")
    ('init', 'order')
    """
    if value is None:
        return DEFAULT_SOURCES
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(name).strip().lower() for name in names if str(name).strip()]
    unknown = [name for name in names if name not in STUDY_SOURCES]
    if unknown or not names:
        shown = repr(unknown[0]) if unknown else "nothing"
        raise TwinrunError(
            f"Unknown source {shown} in --vary: expected a comma list of "
            f"{', '.join(STUDY_SOURCES)}.")
    return tuple(source for source in STUDY_SOURCES if source in names)


def validate_runs(runs):
    """Return `runs` if it is an integer of at least 2, else raise `TwinrunError`."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise TwinrunError(
            f"Expected --runs to be at least 2, since a spread needs two runs or more. "
            f"Received: runs={runs!r}.")
    return runs


def varied_seed(base_seed, source, index):
    """The seed run `index` of `source` uses for the thing it varies.

    Arguments:
        base_seed: the study's base seed.
        source: a study source (`"init"`, `"split"`, ...).
        index: the run's (or level's) index, from 0.

    Example:
    >>> varied_seed(0, "init", 3) == varied_seed(0, "init", 3) != varied_seed(0, "init", 4)
    True
    """
    return seed_for(base_seed, f"study:{source}:{index}")


def run_settings(source, index, base_seed):
    """What run `index` of a one-source study of `source` changes, as `PlannedRun` fields.

    Arguments:
        source: one of `STUDY_SOURCES`.
        index: the run's index within its source, from 0.
        base_seed: the study's base seed.

    Returns a dict with `seed_overrides`, `determinism`, `split_seed` and `perturb_seed`.

    Example:
    >>> run_settings("order", 0, 7)["seed_overrides"] == {"shuffle": varied_seed(7, "order", 0)}
    True
    """
    if source not in STUDY_SOURCES:
        parse_sources([source])  # raises the one-sentence error
    fields = {"seed_overrides": {}, "determinism": True, "split_seed": None,
              "perturb_seed": None}
    seed = varied_seed(base_seed, source, index)
    if source in DERIVED_SEED:
        fields["seed_overrides"] = {DERIVED_SEED[source]: seed}
    elif source == "split":
        fields["split_seed"] = seed
    elif source == "perturb":
        fields["perturb_seed"] = seed
    elif source == "nondeterminism":
        fields["determinism"] = False
    elif source == "all":
        # A fresh run seed: every derived seed (python, numpy, backend, hash, data too) and
        # the split change together, as for a user who fixes nothing.
        fields["seed_overrides"] = derive_seeds(seed)
        fields["split_seed"] = seed_for(seed, "split")
        fields["determinism"] = False
    return fields


def plan_variance(runs, sources=None, *, design="one-at-a-time", seed=0, settings=None,
                  base=None):
    """Plan a variance study: `runs` runs per source, or a crossed grid of two sources.

    Arguments:
        runs: runs per source (levels per source in a crossed design); at least 2.
        sources: a `--vary` value (see `parse_sources`); None for the default.
        design: `"one-at-a-time"` or `"crossed"` (exactly two sources, neither `all` nor
            `nondeterminism`, which have no levels to cross).
        seed: the study's base seed.
        settings: the `--set` values as a dict (see `twinrun.workloads.settings`).
        base: what else defines the runs and is the same for all of them (workload, preset,
            backend, the user's command, ...), as JSON-able data; part of the study id.
            Leave out what does not change results (store path, progress display).

    Example:
    >>> plan = plan_variance(8, "init,order", seed=0, base={"workload": "fashion-cnn"})
    >>> len(plan.runs), plan.runs[0].key, plan.runs[8].seed_overrides.keys() == {"shuffle"}
    (16, 'init/0', True)
    """
    runs = validate_runs(runs)
    sources = parse_sources(sources)
    validate_seed(seed)
    settings = validate_settings(settings)
    if design not in DESIGNS:
        raise TwinrunError(f"Unknown --design {design!r}: expected one of {', '.join(DESIGNS)}.")
    if "perturb" in settings and "perturb" not in sources:
        raise TwinrunError(
            "The --set perturb value sizes the perturb source's noise, so it needs "
            "--vary perturb as well.")
    definition = {"kind": "variance", "plan_version": PLAN_VERSION, "design": design,
                  "sources": list(sources), "runs": runs, "seed": seed, "settings": settings,
                  "base": base or {}}
    study = study_id(definition)
    if design == "crossed":
        planned = _crossed_runs(sources, runs, seed, settings)
    else:
        planned = [PlannedRun(key=f"{source}/{index}", position=0, source=source,
                              levels={source: index}, seed=seed, settings=settings,
                              **run_settings(source, index, seed))
                   for source in sources for index in range(runs)]
    planned = tuple(_numbered(planned))
    return StudyPlan(study_id=study, kind="variance", definition=definition, runs=planned)


def plan_cv(folds, *, repeats=1, seed=0, settings=None, base=None):
    """Plan a stratified k-fold cross-validation: `folds * repeats` runs.

    Arguments:
        folds: `n_splits` of `StratifiedKFold` (at least 2; checked against the smallest
            class by `twinrun.workloads.variations.validate_folds` once the labels are known).
        repeats: how many different fold assignments (at least 1).
        seed: the study's base seed. Repeat 0 splits with `random_state=seed`, as
            `StratifiedKFold(n_splits=K, shuffle=True, random_state=seed)` would; repeat `r`
            with `varied_seed(seed, "cv", r)`. Every run keeps the base seed's other seeds.
        settings, base: as for `plan_variance`.

    Example:
    >>> [run.key for run in plan_cv(2, repeats=2).runs]
    ['repeat=0,fold=0', 'repeat=0,fold=1', 'repeat=1,fold=0', 'repeat=1,fold=1']
    """
    from twinrun.workloads.variations import validate_folds

    validate_folds(folds)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise TwinrunError(
            f"Expected --repeats to be a positive integer. Received: repeats={repeats!r}.")
    validate_seed(seed)
    settings = validate_settings(settings)
    if "perturb" in settings:
        raise TwinrunError("The --set perturb value belongs to variance studies with --vary "
                           "perturb, not to cross-validation; leave it out.")
    definition = {"kind": "cv", "plan_version": PLAN_VERSION, "folds": folds,
                  "repeats": repeats, "seed": seed, "settings": settings, "base": base or {}}
    planned = []
    for repeat in range(repeats):
        random_state = seed if repeat == 0 else varied_seed(seed, "cv", repeat)
        for index in range(folds):
            planned.append(PlannedRun(
                key=f"repeat={repeat},fold={index}", position=0, source="cv",
                levels={"repeat": repeat, "fold": index}, seed=seed, seed_overrides={},
                fold={"n_splits": folds, "index": index, "random_state": random_state},
                settings=settings))
    return StudyPlan(study_id=study_id(definition), kind="cv", definition=definition,
                     runs=tuple(_numbered(planned)))


def study_id(definition):
    """A study's id: its kind and the first 10 hex digits of its canonical JSON's SHA-256.

    Arguments:
        definition: JSON-able data; keys are sorted, so dict order does not matter.

    Example:
    >>> study_id({"kind": "cv", "folds": 5}) == study_id({"folds": 5, "kind": "cv"})
    True
    """
    try:
        canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"),
                               allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TwinrunError(
            f"A study's definition must be plain JSON data (numbers, strings, lists, dicts) "
            f"to name it; {error}.") from None
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    return f"{definition.get('kind', 'study')}-{digest}"


def _crossed_runs(sources, levels, seed, settings):
    if len(sources) != 2 or {"all", "nondeterminism"} & set(sources):
        raise TwinrunError(
            f"A crossed design needs exactly two sources with seeds to cross (from "
            f"{', '.join(s for s in STUDY_SOURCES if s not in ('all', 'nondeterminism'))}). "
            f"Received: --vary {','.join(sources)}.")
    first, second = sources
    planned = []
    for i in range(levels):
        for j in range(levels):
            fields = run_settings(first, i, seed)
            other = run_settings(second, j, seed)
            fields["seed_overrides"] = {**fields["seed_overrides"], **other["seed_overrides"]}
            for name in ("split_seed", "perturb_seed"):
                if fields[name] is None:
                    fields[name] = other[name]
            planned.append(PlannedRun(key=f"{first}={i},{second}={j}", position=0,
                                      source="crossed", levels={first: i, second: j},
                                      seed=seed, settings=settings, **fields))
    return planned


def _numbered(planned):
    for position, run in enumerate(planned):
        yield PlannedRun(**{**asdict(run), "position": position})

