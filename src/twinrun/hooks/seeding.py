"""Seeds and determinism before the script's first line, each framework's on its import, and
the dynamic finding "the framework was used before any seed was set".

With determinism on, the hooks do what `twinrun.deterministic()` does with the launcher's seed:
Python and NumPy at once, and each framework (torch, TensorFlow, JAX, Keras) right after the
script imports it, so a framework the script never imports is never imported. With
`--no-determinism` they seed nothing: the script runs as written, and a script that seeds
nothing then differs between replicas, which is the honest answer for it.

The script's own seeding calls (`random.seed`, `np.random.seed`, `torch.manual_seed`,
`tf.random.set_seed`, `keras.utils.set_random_seed`, and through them `twinrun.deterministic`)
are watched, so that a script which seeds a generator after drawing from it, or never seeds
a framework it trains with, is told so with the line.
"""

import functools
import random
from contextlib import contextmanager
from dataclasses import asdict

from twinrun.hooks.imports import when_imported

_RULE_LATE = "seeded-after-use"
_RULE_NEVER = "framework-unseeded"
_HOW_TO_SEED = {
    "torch": "torch.manual_seed(SEED)",
    "keras": "keras.utils.set_random_seed(SEED)",
}


class Seeding:
    """Which generators the script seeded, and their states as twinrun left them."""

    def __init__(self, session):
        from twinrun.seeds import derive_seeds

        self.session = session
        self.seeds = derive_seeds(session.seed)
        self.seeded = {}     # generator -> (file, line) of the script's first seed call
        self.baseline = {}   # generator -> its state right after twinrun seeded (or imported) it
        self.warned = set()  # frameworks already checked at their first training step

    @contextmanager
    def internal(self):
        """The hooks' own seeding: not the script's, so not watched."""
        self.session.seeding += 1
        try:
            yield
        finally:
            self.session.seeding -= 1
            self._capture()

    def _record(self, controls):
        self.session.controls.extend(asdict(c) for c in controls)
        self.session.save()

    def start(self):
        """Seed Python and NumPy (with determinism on), watch their seed calls, and wait for
        the frameworks to be imported."""
        import numpy as np

        from twinrun.determinism.common import hash_seed_control, seed_python_and_numpy

        if self.session.determinism:
            with self.internal():
                self._record([hash_seed_control(True), *seed_python_and_numpy(self.seeds)])
        self._capture()
        self.watch(random, "seed", ["python"])
        self.watch(np.random, "seed", ["numpy"])
        for name in ("tensorflow", "jax", "torch"):
            when_imported(name, functools.partial(self._framework_imported, name))
        when_imported("keras", self._keras_imported)

    def _framework_imported(self, name, module):
        import os

        from twinrun.determinism import PORTABLE_VARIABLE, framework_module

        if self.session.determinism:
            threads = self._threads()
            with self.internal():
                framework = framework_module(name)
                if os.environ.get(PORTABLE_VARIABLE) == "1":  # `check --portable`
                    self._record([framework.portability()])
                self._record(framework.apply(self.seeds, threads, True))
                # DataLoader workers and order, tf.data: as deterministic() does.
                self._record(list(framework.data_loading(self.seeds, True)))
        if name == "torch":
            self.watch(module, "manual_seed", ["torch"])
        elif name == "tensorflow":
            self.watch(module.random, "set_seed", ["tensorflow"])
        self._capture()

    def _keras_imported(self, module):
        from twinrun.determinism import seed_keras
        from twinrun.determinism.common import seed_python_and_numpy

        if self.session.determinism:
            with self.internal():
                # As deterministic() does: Keras' seed may reseed Python and NumPy with its
                # own; theirs come after it.
                self._record([seed_keras(self.seeds["backend"]),
                              *seed_python_and_numpy(self.seeds)])
        self.watch(module.utils, "set_random_seed", ["keras"])
        self._capture()

    @staticmethod
    def _threads():
        import os

        value = os.environ.get("TWINRUN_THREADS")
        return int(value) if value and value.isdigit() else None

    def watch(self, owner, name, generators):
        """Wrap `owner.name`, a seeding function, to note the script's calls of it."""
        original = getattr(owner, name, None)
        if original is None or getattr(original, "_twinrun_watched", False):
            return
        seeding = self

        @functools.wraps(original)
        def seed(*args, **kwargs):
            if seeding.session.seeding == 0:
                seeding._script_seeds(generators)
            return original(*args, **kwargs)

        seed._twinrun_watched = True
        setattr(owner, name, seed)

    def _script_seeds(self, generators):
        frame = self.session.user_frame(3)
        if frame is None:
            return  # a library seeding for itself
        for generator in generators:
            if generator in self.seeded:
                continue
            self.seeded[generator] = (frame.f_code.co_filename, frame.f_lineno)
            if self._drawn(generator):
                label = {"python": "Python's `random`", "numpy": "NumPy's global generator",
                         "torch": "torch's generator", "keras": "Keras' global generator"}
                self.session.add_finding(
                    _RULE_LATE, frame,
                    f"{label[generator]} was drawn from before this line seeded it",
                    "Whatever drew from it above this line (a model built, weights "
                    "initialised, random data made) got numbers from an unseeded generator, "
                    "so a plain `python` run of the script differs every time there.",
                    "Set every seed at the top of the script, before any model, layer or "
                    "random number is made (or call twinrun.deterministic(SEED) there).")

    def _capture(self):
        for generator in ("python", "numpy", "torch", "keras"):
            state = _state(generator)
            if state is not None:
                self.baseline[generator] = state

    def _drawn(self, generator):
        if generator == "keras":
            return _state("keras") is True
        state, baseline = _state(generator), self.baseline.get(generator)
        return state is not None and baseline is not None and state != baseline

    def check_training(self, framework, seeded_by):
        """At a framework's first training step: a finding if the script seeded none of
        `seeded_by` (the generators that would have seeded this training)."""
        if framework in self.warned:
            return
        self.warned.add(framework)
        if any(g in self.seeded for g in seeded_by):
            return
        frame = self.session.user_frame(3)
        if frame is None:
            return
        self.session.add_finding(
            _RULE_NEVER, frame,
            f"{framework} trains here, but the script sets no seed for it",
            "Run as plain `python`, the initial weights, dropout masks and shuffles come from "
            "a new seed every run; under `twinrun check` only twinrun's hooks seeded it.",
            f"Seed before building the model: {_HOW_TO_SEED[framework]}, or "
            "twinrun.deterministic(SEED).")


def _state(generator):
    """A comparable snapshot of a global generator's state (None where unknown)."""
    import sys

    if generator == "python":
        return random.getstate()
    if generator == "numpy" and "numpy" in sys.modules:
        _, keys, position, *_ = sys.modules["numpy"].random.get_state(legacy=True)
        return (keys.tobytes(), position)
    if generator == "torch" and "torch" in sys.modules:
        return bytes(sys.modules["torch"].get_rng_state().numpy())
    if generator == "keras" and "keras" in sys.modules:
        try:
            from keras.src.backend.common import global_state
            from keras.src.random import seed_generator
        except ImportError:
            return None
        return global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR) is not None
    return None
