"""`--set key=value`: the training settings a study may change, with their types and ranges.

The keys cover what the answer names as worth more than seeds (learning rate, batch size,
dropout, epochs, patience, training-set size, a larger validation set) plus `perturb`, the
magnitude of the answer's own noise experiment ("witness its life philosophy change"):

| key             | type  | range             | meaning                                        |
|-----------------|-------|-------------------|------------------------------------------------|
| `learning_rate` | float | 0 < x <= 1        | Adam's learning rate (the CNN's default 1e-3)  |
| `batch_size`    | int   | 1 <= x <= 60000   | training batch size (default 64)               |
| `dropout`       | float | 0 <= x < 1        | the dense dropout layer's rate (the seed's     |
|                 |       |                   | 0.5); the conv one gets half (0.25)            |
| `epochs`        | int   | x >= 1            | most epochs                                    |
| `patience`      | int   | x >= 0            | early-stopping patience                        |
| `subset`        | int   | 100 <= x <= 60000 | training images drawn (stratified) from 60k    |
| `val_fraction`  | float | 0 < x < 1         | share of them held out for validation (0.2)    |
| `perturb`       | float | 0 < x <= 1        | uniform noise of this size added to half of    |
|                 |       |                   | the first layer's weights (`--vary perturb`)   |

Parsing is pure Python (no NumPy), so the CLI can validate before anything heavy starts.
"""

import math
from dataclasses import dataclass

from twinrun.errors import TwinrunError


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # int or float
    low: float
    high: float
    low_open: bool = False  # True: the low end itself is excluded
    high_open: bool = False

    def describe(self):
        noun = "an integer" if self.kind is int else "a number"
        low = f"above {self.low:g}" if self.low_open else f"at least {self.low:g}"
        if math.isinf(self.high):
            return f"{noun} {low}"
        high = f"below {self.high:g}" if self.high_open else f"at most {self.high:g}"
        return f"{noun} {low} and {high}"

    def contains(self, value):
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


SETTINGS = {setting.name: setting for setting in (
    Setting("learning_rate", float, 0, 1, low_open=True),
    Setting("batch_size", int, 1, 60000),
    Setting("dropout", float, 0, 1, high_open=True),
    Setting("epochs", int, 1, math.inf),
    Setting("patience", int, 0, math.inf),
    Setting("subset", int, 100, 60000),
    Setting("val_fraction", float, 0, 1, low_open=True, high_open=True),
    Setting("perturb", float, 0, 1, low_open=True),
)}


def parse_setting(text):
    """One `key=value` as `(key, value)`, the value converted to the key's type.

    Arguments:
        text: what the user wrote after `--set`, e.g. `"learning_rate=3e-4"`.

    Raises `TwinrunError` with one sentence for a missing `=`, an unknown key, a value of the
    wrong type or one out of range.

    Example:
    >>> parse_setting("batch_size=128")
    ('batch_size', 128)
    """
    key, sep, raw = str(text).partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise TwinrunError(
            f"Expected --set to be key=value, e.g. --set learning_rate=3e-4. Received: {text!r}.")
    if key not in SETTINGS:
        raise TwinrunError(
            f"Unknown --set key {key!r}: expected one of {', '.join(sorted(SETTINGS))}.")
    setting = SETTINGS[key]
    value = _convert(raw, setting.kind)
    if value is None or not setting.contains(value):
        raise TwinrunError(
            f"Expected --set {key} to be {setting.describe()}. Received: {key}={raw!r}.")
    return key, value


def parse_settings(texts):
    """All `--set` values as one dict `{key: value}`, sorted by key.

    Arguments:
        texts: the `--set` strings in the order given (an empty list gives `{}`).

    A key given twice is refused rather than silently taking the last value: the study id
    is derived from the settings, and an ambiguous command should not name a study.

    Example:
    >>> parse_settings(["epochs=3", "val_fraction=0.4"])
    {'epochs': 3, 'val_fraction': 0.4}
    """
    settings = {}
    for text in texts or ():
        key, value = parse_setting(text)
        if key in settings and settings[key] != value:
            raise TwinrunError(
                f"The --set key {key} is given twice ({settings[key]!r} and {value!r}); "
                f"keep one.")
        settings[key] = value
    return dict(sorted(settings.items()))


def validate_settings(settings):
    """Check an already-typed settings dict (e.g. read back from a stored study).

    Arguments:
        settings: `{key: value}` with values of the keys' types.

    Returns the settings sorted by key, or raises `TwinrunError` with one sentence.
    """
    checked = {}
    for key, value in (settings or {}).items():
        if key not in SETTINGS:
            raise TwinrunError(
                f"Unknown --set key {key!r}: expected one of {', '.join(sorted(SETTINGS))}.")
        setting = SETTINGS[key]
        typed = _typed(value, setting.kind)
        if typed is None or not setting.contains(typed):
            raise TwinrunError(
                f"Expected --set {key} to be {setting.describe()}. Received: {key}={value!r} "
                f"(of type {type(value).__name__}).")
        checked[key] = typed
    return dict(sorted(checked.items()))


def _convert(raw, kind):
    try:
        value = int(raw) if kind is int else float(raw)
    except ValueError:
        return None
    if kind is float and not math.isfinite(value):
        return None
    return value


def _typed(value, kind):
    # bool is an int in Python; `epochs=True` is a mistake, not 1.
    if isinstance(value, bool):
        return None
    if kind is int:
        return value if isinstance(value, int) else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None
