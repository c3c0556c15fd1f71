"""What a run of a built-in workload trains with: the preset, then `--epochs`, then `--set`.

A study run (`twinrun.studies.plan`) sets more than a preset: `split_seed`, `perturb_seed`,
`fold` and the `--set` settings. `training_options` turns all of it into one
`TrainingOptions` a workload reads; `validate_supported` refuses, in one sentence, what a
workload cannot honour, so that a run never silently ignores part of what it was asked.

The `dropout` setting is the rate of the CNN's second (dense) dropout layer; the first
(convolutional) layer gets half of it, the seed's 0.25 : 0.5 ratio, so `--set dropout=0.5`
trains exactly the seed's model and `--set dropout=0` turns dropout off.

Pure Python (no NumPy), so `RunConfig.validated` can call it in the parent before anything
heavy is imported.
"""

from dataclasses import asdict, dataclass

from twinrun.errors import TwinrunError

# The seed's values (the question's script), which the presets keep.
SPLIT_RANDOM_STATE = 42
VAL_FRACTION = 0.2
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
DROPOUT = 0.5  # the dense layer's rate; the conv layer's is half of it


@dataclass(frozen=True)
class TrainingOptions:
    """Everything that sets how one run trains, after presets, flags and `--set` are merged.

    Arguments:
        epochs: the most epochs.
        patience: early-stopping patience (None: the workload has no early stopping).
        learning_rate: Adam's learning rate.
        batch_size: training batch size.
        dropout: the dense dropout layer's rate (the conv layer gets half), or None for a
            workload without dropout.
        subset: training images drawn (stratified) from the full training set, or None for
            all of them.
        val_fraction: the share of those held out for validation (unused with `fold`).
        split_seed: the train/validation split's `random_state`.
        fold: `{"n_splits", "index", "random_state"}`, or None.
        perturb_seed: picks the first-layer weight(s) to change, or None for no change.
        perturb_noise: None for the one-ulp change, else the size of the uniform noise added
            to half of the first layer's weights. Without `perturb_seed` it changes nothing:
            a study's `--set` values reach every run, and only its `perturb` runs have a
            `perturb_seed`.

    Example:
    >>> from twinrun.runconfig import RunConfig
    >>> options = training_options(RunConfig(settings={"dropout": 0.3}), epochs=10,
    ...                            patience=20, subset=6000)
    >>> options.dropout_rates, options.batch_size
    ((0.15, 0.3), 64)
    """

    epochs: int
    patience: int | None
    learning_rate: float = LEARNING_RATE
    batch_size: int = BATCH_SIZE
    dropout: float | None = DROPOUT
    subset: int | None = None
    val_fraction: float = VAL_FRACTION
    split_seed: int = SPLIT_RANDOM_STATE
    fold: dict | None = None
    perturb_seed: int | None = None
    perturb_noise: float | None = None

    @property
    def dropout_rates(self):
        """The rates of the conv and the dense dropout layers: half of `dropout`, and it."""
        return (self.dropout / 2, self.dropout)

    def to_dict(self):
        return asdict(self)


# What each workload can honour beyond its seeds and determinism; the rest is refused.
_ANSWER_DEMO_REFUSES = {
    "dropout": "its small CNN has no dropout layer",
    "patience": "it trains without early stopping",
    "subset": "its inputs are random, drawn fresh for each run",
    "val_fraction": "its validation inputs are a separate random draw",
    "split_seed": "its validation inputs are a separate random draw",
    "fold": "its inputs are random, so there is nothing to cross-validate",
    "predictions": "its labels are random multi-hot vectors, not one class per image",
}


def validate_supported(config):
    """Raise `TwinrunError` with one sentence if `config` asks what its workload cannot do.

    Arguments:
        config: a `RunConfig` (its workload, settings, split, fold and perturbation).

    Example:
    >>> from twinrun.runconfig import RunConfig
    >>> validate_supported(RunConfig(workload="answer-demo", settings={"learning_rate": 0.01}))
    >>> validate_supported(RunConfig(workload="answer-demo", settings={"dropout": 0.2}))
    Traceback (most recent call last):
    ...
    twinrun.errors.TwinrunError: The answer-demo workload cannot honour dropout, since its small CNN has no dropout layer; leave it out or use the fashion-cnn workload.
    """
    settings = config.settings or {}
    if config.workload == "answer-demo":
        asked = {**settings, "split_seed": config.split_seed, "fold": config.fold,
                 "predictions": config.predictions or None}
        for name, why in _ANSWER_DEMO_REFUSES.items():
            if asked.get(name) is not None:
                raise TwinrunError(f"The answer-demo workload cannot honour {name}, since "
                                   f"{why}; leave it out or use the fashion-cnn workload.")
    if config.fold is not None:
        for name, given in (("--set val_fraction", "val_fraction" in settings),
                            ("split_seed", config.split_seed is not None)):
            if given:
                raise TwinrunError(
                    f"A cross-validation run holds out its fold for validation, so {name} "
                    f"has nothing to set; leave it out.")
    for name in ("epochs", "patience"):
        flag, setting = getattr(config, name), settings.get(name)
        if flag is not None and setting is not None and flag != setting:
            raise TwinrunError(
                f"--{name} {flag} and --set {name}={setting} disagree; give one of them.")


def training_options(config, *, epochs, patience, subset=None, dropout=DROPOUT):
    """The `TrainingOptions` of one run: the workload's defaults, then flags, then `--set`.

    Arguments:
        config: a validated `RunConfig`.
        epochs, patience, subset: the preset's (or the workload's) defaults.
        dropout: the workload's default dense dropout rate, None if it has no dropout.

    Example:
    >>> from twinrun.runconfig import RunConfig
    >>> config = RunConfig(epochs=3, settings={"val_fraction": 0.4, "subset": 1200})
    >>> options = training_options(config, epochs=10, patience=20, subset=6000)
    >>> options.epochs, options.subset, options.val_fraction, options.split_seed
    (3, 1200, 0.4, 42)
    """
    validate_supported(config)
    settings = config.settings or {}
    return TrainingOptions(
        epochs=settings.get("epochs", config.epochs or epochs),
        patience=settings.get("patience", patience if config.patience is None
                              else config.patience),
        learning_rate=settings.get("learning_rate", LEARNING_RATE),
        batch_size=settings.get("batch_size", BATCH_SIZE),
        dropout=settings.get("dropout", dropout),
        subset=settings.get("subset", subset),
        val_fraction=settings.get("val_fraction", VAL_FRACTION),
        split_seed=SPLIT_RANDOM_STATE if config.split_seed is None else config.split_seed,
        fold=config.fold,
        perturb_seed=config.perturb_seed,
        perturb_noise=settings.get("perturb"),
    )
