"""What one run is asked to do, as plain data that crosses process boundaries as JSON."""

from dataclasses import asdict, dataclass, field, fields

from twinrun.backends import resolve_backend
from twinrun.errors import TwinrunError
from twinrun.seeds import SOURCE_SEED_LIMIT, derive_seeds, validate_seed

WORKLOADS = ("fashion-cnn", "answer-demo")
PRESETS = ("quick", "study", "full", "tiny")


@dataclass
class RunConfig:
    """One run of a built-in workload.

    Arguments:
        workload: `"fashion-cnn"` or `"answer-demo"`.
        backend: Keras backend; None for the one Keras would pick.
        seed: the run seed (every source's seed derives from it, see `twinrun.seeds`).
        preset: `"quick"`, `"study"`, `"full"` or `"tiny"` (fashion-cnn only; see `docs/presets.md`).
        epochs: override the preset's maximum number of epochs.
        patience: override the early-stopping patience.
        determinism: False trains with seeds only, as a user would by hand.
        threads: thread-pool size; None for all the CPUs this process may use.
        data_dir: where Fashion-MNIST lies; None searches the usual places.
        store: run-store folder; None for the default.
        seed_overrides: `{source: seed}` replacing single derived seeds, each from 0 to
            2**31 - 1 (see `twinrun.seeds`).
        trace: path of the per-step trace to write, or None for no trace.
        record: record the run in the store.
        study_id: the study this run belongs to.
        check_id: the check this run is a replica of.
        replica: the replica's index within its check.
        split_seed: the train/validation split's `random_state` (studies of `split`); None
            keeps the workload's own (42 for the Fashion-MNIST CNN).
        perturb_seed: picks the weight that `perturb` moves by one ulp (or the half of the
            first layer's weights that get noise, with `settings["perturb"]`); None: no change.
        fold: `{"n_splits", "index", "random_state"}` for one cross-validation run, else None.
        settings: a study's `--set` values (see `twinrun.workloads.settings`).
        predictions: keep the test predictions (one byte per test image) in the result.
        portable: CPU kernels that give the same bits on any x86-64 CPU with AVX2 (torch;
            docs/portable.md), set before the run's process starts.
    """

    workload: str = "fashion-cnn"
    backend: str | None = None
    seed: int = 0
    preset: str = "quick"
    epochs: int | None = None
    patience: int | None = None
    determinism: bool = True
    threads: int | None = None
    data_dir: str | None = None
    store: str | None = None
    seed_overrides: dict = field(default_factory=dict)
    trace: str | None = None
    record: bool = True
    study_id: str | None = None
    check_id: str | None = None
    replica: int | None = None
    split_seed: int | None = None
    perturb_seed: int | None = None
    fold: dict | None = None
    settings: dict = field(default_factory=dict)
    predictions: bool = False
    portable: bool = False

    def validated(self):
        """Return a copy with the backend resolved, or raise `TwinrunError` with one sentence."""
        if self.workload not in WORKLOADS:
            raise TwinrunError(
                f"Unknown workload {self.workload!r}: expected one of {', '.join(WORKLOADS)}.")
        if self.preset not in PRESETS:
            raise TwinrunError(
                f"Unknown preset {self.preset!r}: expected one of {', '.join(PRESETS)}.")
        validate_seed(self.seed)
        for name in ("epochs", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise TwinrunError(
                    f"Expected --{name} to be a positive integer. Received: {name}={value!r}.")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 0):
            raise TwinrunError(
                f"Expected --patience to be zero or a positive integer. Received: "
                f"patience={self.patience!r}.")
        if not isinstance(self.seed_overrides, dict):
            raise TwinrunError(
                f"Expected seed_overrides to be a dict of {{source: seed}}. Received: "
                f"seed_overrides={self.seed_overrides!r}.")
        # The overrides go into the frameworks as they are: refuse here, in the parent, what
        # a framework would refuse in the worker.
        derive_seeds(self.seed, self.seed_overrides)
        for name in ("split_seed", "perturb_seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < SOURCE_SEED_LIMIT):
                raise TwinrunError(f"Expected {name} to be an integer from 0 to 2**31 - 1. "
                                   f"Received: {name}={value!r}.")
        if self.fold is not None:
            _validate_fold(self.fold)
        from twinrun.workloads.settings import validate_settings

        validate_settings(self.settings)
        from twinrun.workloads.options import validate_supported

        validate_supported(self)  # what the workload cannot honour, refused before it starts
        values = asdict(self)
        values["backend"] = resolve_backend(self.backend)
        return RunConfig(**values)

    @property
    def seeds(self):
        return derive_seeds(self.seed, self.seed_overrides)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _validate_fold(fold):
    keys = {"n_splits", "index", "random_state"}
    if not isinstance(fold, dict) or set(fold) != keys:
        raise TwinrunError(f"Expected fold to be a dict with {', '.join(sorted(keys))}. "
                           f"Received: fold={fold!r}.")
    n, index = fold["n_splits"], fold["index"]
    if not (isinstance(n, int) and n >= 2 and isinstance(index, int) and 0 <= index < n):
        raise TwinrunError(f"Expected a fold index from 0 to n_splits - 1 with n_splits >= 2. "
                           f"Received: fold={fold!r}.")
