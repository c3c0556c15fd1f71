"""JSON for the store's dict columns, tolerant of what training code hands over.

Metrics and configs arrive with NumPy scalars (`np.float32(0.91)`), arrays, tensors, paths and
sets in them; `json.dumps` rejects all of these. They are turned into plain Python values by
duck typing (`.item()`, `.tolist()`), so this module never imports NumPy or a framework.
Keys are sorted so equal dicts give equal text.
"""

import json
import math
from datetime import date, datetime
from pathlib import PurePath


def _plain(value):
    """Return a JSON-encodable stand-in for `value`, or raise TypeError."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and callable(value.item):
        return value.item()  # NumPy / framework scalar, including 0-d arrays and tensors
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()  # NumPy array or framework tensor
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(
        f"Expected a JSON-compatible value (number, string, list, dict, NumPy scalar or array). "
        f"Received: {value!r} (of type {type(value)})"
    )


def to_json(value):
    """Encode `value` as JSON text with sorted keys; None stays None (SQL NULL)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=_plain)


def from_json(text):
    """Decode what `to_json` wrote; NULL becomes None."""
    if text is None:
        return None
    return json.loads(text)


def to_scalar(value):
    """Turn a NumPy / framework scalar into a Python one for a plain SQL column."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def to_float(value):
    """A float for a REAL column, or None when `value` is missing or not a finite-able number."""
    value = to_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if not math.isnan(value) else None


def test_accuracy(metrics):
    """The test accuracy inside a metrics dict, under the names training code tends to use."""
    if not isinstance(metrics, dict):
        return None
    for key in ("test_accuracy", "test_acc"):
        if key in metrics:
            return to_float(metrics[key])
    test = metrics.get("test")
    if isinstance(test, dict):
        return to_float(test.get("accuracy", test.get("acc")))
    return None
