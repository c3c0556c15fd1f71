"""Backend names, and which backend a run uses when none is given.

The default follows Keras' own rule so that `twinrun train` trains where `import keras` would:
the `KERAS_BACKEND` environment variable, then the `backend` key of `~/.keras/keras.json`
(or `$KERAS_HOME/keras.json`), else TensorFlow.
"""

import importlib.util
import json
import os
from pathlib import Path

from twinrun.errors import BackendError

KERAS_BACKENDS = ("tensorflow", "jax", "torch")

# The Python module that must be importable for each backend.
_FRAMEWORK_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def default_backend():
    """Return the backend Keras would pick in this environment."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    config = keras_home / "keras.json"
    try:
        name = json.loads(config.read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    return name or "tensorflow"


def resolve_backend(name=None):
    """Validate a backend name (or pick the default) and return it.

    Arguments:
        name: `"tensorflow"`, `"jax"`, `"torch"` or None for Keras' default.

    Raises `BackendError` with one sentence when the name is unknown.
    """
    if name is None:
        name = default_backend()
    if name not in KERAS_BACKENDS:
        raise BackendError(
            f"Unknown backend {name!r}: expected one of {', '.join(KERAS_BACKENDS)}."
        )
    return name


def is_installed(name):
    """True when the framework behind backend `name` can be imported (without importing it)."""
    return importlib.util.find_spec(_FRAMEWORK_MODULE[name]) is not None


def require_installed(name):
    """Raise `BackendError` when the framework for `name` is not installed."""
    if not is_installed(name):
        raise BackendError(
            f"Backend {name!r} is not installed in this environment: "
            f"run `pip install twinrun[{name}]` (or `make run`) first."
        )
