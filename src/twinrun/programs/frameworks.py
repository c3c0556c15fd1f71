"""What a twinrun program leaves out of its own process before it imports Keras."""

import importlib.abc
import sys


class _LeftOut(importlib.abc.MetaPathFinder):
    """Makes `import jax` fail in this process as if JAX were not installed.

    Keras 3 imports JAX on every backend whenever it is installed (its Orbax checkpoint
    callback patches `jax.monitoring` at import, inside `try: ... except ImportError`): 1.35 s
    of import time, about 1 s of CPU per fresh process (docs/performance.md). A built-in
    workload's run on TensorFlow or torch uses nothing of it, so its worker leaves it out (and
    so does the doctor's audit, which must see what a run sees); the run's bits are the same
    either way.
    A user's own script, under `twinrun check` or a study, is never run in these programs and
    keeps everything it imports.
    """

    NAMES = ("jax", "jaxlib")

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.NAMES:
            raise ModuleNotFoundError(f"No module named {name!r} (left out of this "
                                      f"TensorFlow or torch run by twinrun)", name=name)
        return None


def leave_out_unused_frameworks(backend):
    """Before Keras is imported: on the TensorFlow and torch backends, JAX cannot be imported
    (see `_LeftOut`). Does nothing on JAX, or when JAX is already imported."""
    if backend in ("tensorflow", "torch") and not any(m in sys.modules for m in _LeftOut.NAMES):
        sys.meta_path.insert(0, _LeftOut())
