"""How every report writes a number, an interval and a divergence's place: terminal, Markdown
and HTML alike, so the same value reads the same everywhere.

Three number forms, each for a purpose:
- `number`: significant digits (`0.873412`), for values of any size (losses, p-values);
- `decimals`: a fixed count of decimals, in scientific form when very small or large (a
  study's means and SDs, compared by eye down a column);
- `fixed`: exactly `digits` decimals (a replica's final loss, its test accuracy).
"""

import math


def console():
    """The Rich console reports print to (stdout; plain text when it is not a terminal)."""
    from rich.console import Console

    return Console()


def number(value, digits=6):
    """`value` with `digits` significant digits; "" for None, other values as `str`.

    Example:
    >>> number(0.123456789), number(1234567.0), number(None), number(3)
    ('0.123457', '1.2346e+06', '', '3')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.4e}"
    return str(value)


def decimals(value, digits=4):
    """`value` with `digits` decimals, or in scientific form below 1e-3 or from 1e5; "" for
    None and non-finite values; integers as they are.

    Example:
    >>> decimals(0.87341), decimals(0.00001234), decimals(7), decimals(float("nan"))
    ('0.8734', '1.23e-05', '7', '')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    magnitude = abs(value)
    if magnitude and (magnitude < 1e-3 or magnitude >= 1e5):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def fixed(value, digits):
    """`value` with exactly `digits` decimals; "" for None.

    Example:
    >>> fixed(0.5, 3), fixed(None, 3)
    ('0.500', '')
    """
    return "" if value is None else f"{value:.{digits}f}"


def interval(values, digits=4, form=decimals):
    """A confidence interval `[low, high]`, each end written by `form`; "" when it is missing.

    Example:
    >>> interval([0.81, 0.8312]), interval([0.81, 0.8312], 3, form=number), interval(None)
    ('[0.8100, 0.8312]', '[0.81, 0.831]', '')
    """
    if not values or values[0] is None or values[1] is None:
        return ""
    return f"[{form(values[0], digits)}, {form(values[1], digits)}]"


def where(divergence):
    """Where the replicas first parted, in words: the same numbers as the JSON verdict (steps
    counted from 0, epochs from 1, as everywhere in twinrun).

    Arguments:
        divergence: the verdict's `first_divergence` as a dict.

    Example:
    >>> where({"step": 12, "epoch": 1}), where({"step": -1, "epoch": None})
    ('at step 12 (epoch 1)', 'in the training data, before step 0')
    """
    step, epoch = divergence.get("step"), divergence.get("epoch")
    if isinstance(step, int) and step < 0:
        return "in the training data, before step 0"
    if epoch is None:
        return f"at step {step}"
    return f"at step {step} (epoch {epoch})"


# One fingerprint length in every table and page: the first 16 hex digits (64 bits) tell runs
# apart; `show --json` keeps the whole digest.
FINGERPRINT_DIGITS = 16


def short_fingerprint(fingerprint):
    """A fingerprint's short form, as every table prints it.

    Example:
    >>> short_fingerprint("9f059ef9eb794b1a" + "0" * 16)
    '9f059ef9eb794b1a'
    """
    return (fingerprint or "")[:FINGERPRINT_DIGITS]


def duration(seconds):
    """A duration for people, written the same way in every table, page and progress line.

    >>> duration(12.54), duration(65.2), duration(3725), duration(None)
    ('12.5 s', '1m 05s', '1h 02m', '')
    """
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"
