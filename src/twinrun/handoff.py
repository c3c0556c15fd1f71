"""What a study hands a user's script, and what the script hands back (`twinrun.seeds()`,
`twinrun.log_metrics()`).

`twinrun variance --runs 8 --vary init,order -- python train.py` starts the script once per
planned run, in a fresh process, with two environment variables:

- `TWINRUN_SEEDS`: the run's seeds as JSON, by the names a study varies (`init`, `order`,
  `dropout`, `split`) and the other derived seeds of `twinrun.seeds` (`python`, `numpy`,
  `backend`, `hash`, `data`); `order` is the derived seed `shuffle`;
- `TWINRUN_METRICS`: a file the script appends JSON lines to: the metrics it reports
  (`log_metrics`, or the Keras `Trace` callback's last epoch of `fit`), and the name of each
  seed it reads, so the study can say "your script never read the `dropout` seed".

Outside a study both functions still work: `seeds()` derives the seeds from `twinrun check`'s
seed (`TWINRUN_SEED`) or the default seed 0, and `log_metrics()` keeps nothing. This module is
pure Python; it imports no framework.
"""

import json
import os
import sys

from twinrun.errors import TwinrunError

SEEDS_VAR = "TWINRUN_SEEDS"
METRICS_VAR = "TWINRUN_METRICS"
# The seeds a study varies, by their study name, and the derived seed each one is.
STUDY_SEEDS = {"init": "init", "order": "shuffle", "dropout": "dropout", "split": None}
# The other derived seeds, handed over under their own names.
OTHER_SEEDS = ("python", "numpy", "backend", "hash", "data")

_logged_reads = set()
_default_note_shown = []


def script_seeds(run_seed, overrides=None, split_seed=None):
    """The seeds a script gets, `{name: seed}`, from a run's seed and its study overrides.

    Arguments:
        run_seed: the run seed (see `twinrun.seeds`).
        overrides: `{derived source: seed}` replacing single derived seeds.
        split_seed: the train/validation split's seed; None derives it from the run seed
            (`seed_for(run_seed, "split")`).

    Example:
    >>> seeds = script_seeds(7, {"shuffle": 5})
    >>> seeds["order"], sorted(seeds)[:4]
    (5, ['backend', 'data', 'dropout', 'hash'])
    """
    from twinrun.seeds import derive_seeds, seed_for

    derived = derive_seeds(run_seed, overrides)
    seeds = {name: derived[source] for name, source in STUDY_SEEDS.items() if source}
    seeds["split"] = seed_for(run_seed, "split") if split_seed is None else int(split_seed)
    seeds.update({name: derived[name] for name in OTHER_SEEDS})
    return seeds


def derived_from_names(seeds):
    """A study's seeds by name (`script_seeds`) as `twinrun.seeds` sources, for `deterministic`.

    Example:
    >>> derived_from_names({"init": 1, "order": 2, "split": 3, "numpy": 4})
    {'init': 1, 'shuffle': 2, 'numpy': 4}
    """
    result = {}
    for name, value in seeds.items():
        if name in STUDY_SEEDS:
            if STUDY_SEEDS[name]:
                result[STUDY_SEEDS[name]] = value
        elif name in OTHER_SEEDS:
            result[name] = value
    return result


class Seeds(dict):
    """A run's seeds by name; under a study it notes each seed the script reads.

    Reading a seed (`seeds["init"]`, `seeds.get("order")`, `.items()`, `.values()`) is what
    tells the study that the script uses it.
    """

    def __getitem__(self, name):
        _note_read(name)
        return super().__getitem__(name)

    def get(self, name, default=None):
        _note_read(name)
        return super().get(name, default)

    def items(self):
        for name in self:
            _note_read(name)
        return super().items()

    def values(self):
        for name in self:
            _note_read(name)
        return super().values()


def seeds():
    """This run's seeds by name, from the study (or check) that started the process.

    Under `twinrun variance ... -- python train.py` each run gets its own: the source a run
    varies has a new seed, the others stay fixed. Keys: `init` (weight initialisers), `order`
    (the order of training batches), `dropout` (dropout masks), `split` (the train/validation
    split), and `python`, `numpy`, `backend`, `hash`, `data`. Outside a study they derive from
    `twinrun check`'s seed, or from the default seed 0.

    Example:
    >>> import twinrun
    >>> sorted(twinrun.seeds())[:5]
    ['backend', 'data', 'dropout', 'hash', 'init']
    """
    text = os.environ.get(SEEDS_VAR)
    if text:
        try:
            values = json.loads(text)
        except ValueError:
            values = None
        if not isinstance(values, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values.values()):
            raise TwinrunError(f"Expected the environment variable {SEEDS_VAR} to hold a JSON "
                               f"object of integer seeds. Received: {SEEDS_VAR}={text[:80]!r}.")
        return Seeds(values)
    from twinrun.seeds import DEFAULT_SEED

    value = os.environ.get("TWINRUN_SEED")
    if value is None:
        if not _default_note_shown:
            _default_note_shown.append(True)
            print(f"twinrun: seeds() was called outside a study or check, so they derive from "
                  f"the default seed {DEFAULT_SEED}.", file=sys.stderr, flush=True)
        return Seeds(script_seeds(DEFAULT_SEED))
    try:
        return Seeds(script_seeds(int(value)))
    except ValueError:
        raise TwinrunError(f"Expected the environment variable TWINRUN_SEED to be an integer. "
                           f"Received: TWINRUN_SEED={value!r}.") from None


def launcher_seeds():
    """The derived seeds a study passed to this process (for `deterministic`), or None."""
    if not os.environ.get(SEEDS_VAR):
        return None
    return derived_from_names(dict(dict.items(seeds())))  # not noted as the script's reads


def log_metrics(**metrics):
    """Report this run's final metrics to the study that started it; return them as floats.

    Arguments:
        **metrics: name=number. A study summarises `test_accuracy` (its default `--metric`),
            `test_loss`, `best_val_loss` or `stopped_epoch`; other names are kept with the run.
            Call it again to add or replace values. Outside a study it keeps nothing.

    Example:
    >>> import twinrun
    >>> twinrun.log_metrics(test_accuracy=0.875, stopped_epoch=6)
    {'test_accuracy': 0.875, 'stopped_epoch': 6.0}
    """
    values = {}
    for name, value in metrics.items():
        try:
            number = None if isinstance(value, (bool, str, bytes)) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise TwinrunError(f"Expected log_metrics values to be numbers. Received: "
                               f"{name}={value!r} (of type {type(value).__name__}).")
        values[name] = number
    _append({"metrics": values})
    return values


def report_fit(epoch_logs):
    """Report what Keras' `fit` logged (the Keras `Trace` callback calls this at its end).

    Arguments:
        epoch_logs: one dict of logs per epoch, in order.

    The last epoch's logs are kept as they are (`loss`, `val_accuracy`, ...), with
    `best_val_loss` (the least `val_loss`) and `stopped_epoch` (the epochs trained) in the
    study's vocabulary. What `log_metrics` reports wins over these.
    """
    if not epoch_logs or not os.environ.get(METRICS_VAR):
        return
    values = {}
    for name, value in epoch_logs[-1].items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            continue
    losses = [float(logs["val_loss"]) for logs in epoch_logs if "val_loss" in logs]
    if losses:
        values["best_val_loss"] = min(losses)
    values["stopped_epoch"] = len(epoch_logs)
    _append({"fit_metrics": values})


def read_records(path):
    """What a script wrote to its metrics file: `(metrics, seeds_read)`.

    `log_metrics` values win over those taken from `fit`; a line cut short by a killed
    process is skipped.
    """
    fit, logged, read = {}, {}, []
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        fit.update(record.get("fit_metrics") or {})
        logged.update(record.get("metrics") or {})
        name = record.get("seed_read")
        if isinstance(name, str) and name not in read:
            read.append(name)
    return {**fit, **logged}, read


def _note_read(name):
    if name in _logged_reads or not os.environ.get(METRICS_VAR):
        return
    _logged_reads.add(name)
    _append({"seed_read": str(name)})


def _append(record):
    path = os.environ.get(METRICS_VAR)
    if not path:
        return
    # One write per line, appended: a process killed mid-run leaves whole lines behind.
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
