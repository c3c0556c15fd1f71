"""The dynamic finding "a global generator was drawn from by something other than the model".

The global generators (Python's `random`, NumPy's legacy `np.random.*`, torch's default
generator) are shared: when the script shuffles its data or makes random inputs from the same
stream that initialises the weights and draws the dropout masks, any change in one (a batch
size, a layer added) moves all the others, and a seed set for one purpose silently covers or
uncovers the others. The drawing functions are wrapped; a call made directly by the user's code
(not by a library, and in torch not inside a module's `forward`) is recorded once per line.

The wrapper costs one frame look-up per call. TensorFlow's `tf.random.*` ops are not watched:
without an op seed they take theirs from the global seed and a per-op counter, which twinrun
fixes, so they do not share a stream the same way.
"""

import functools
import random
import sys

_PYTHON = ("random", "randint", "randrange", "choice", "choices", "shuffle", "sample",
           "uniform", "gauss", "normalvariate")
_NUMPY = ("rand", "randn", "randint", "random", "random_sample", "choice", "shuffle",
          "permutation", "normal", "uniform", "standard_normal", "binomial", "poisson",
          "exponential", "beta", "integers")
_TORCH = ("rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial",
          "rand_like", "randn_like", "randint_like")

_OWN_GENERATOR = {
    "python": "random.Random(SEED)",
    "numpy": "rng = np.random.default_rng(SEED) and rng.permutation(...), rng.random(...)",
    "torch": "g = torch.Generator().manual_seed(SEED), passed as generator=g",
}
_LABEL = {"python": "Python's global `random`", "numpy": "NumPy's global generator",
          "torch": "torch's global generator"}


class DrawWatcher:
    """Wraps the global generators' drawing functions of one session."""

    def __init__(self, session, in_model=lambda: False):
        self.session = session
        self.in_model = in_model  # True while a torch module's forward runs
        self._seen = set()

    def watch_python_and_numpy(self):
        import numpy as np

        for name in _PYTHON:
            self._wrap(random, name, "python", f"random.{name}")
        for name in _NUMPY:
            self._wrap(np.random, name, "numpy", f"np.random.{name}")

    def watch_torch(self, torch):
        for name in _TORCH:
            self._wrap(torch, name, "torch", f"torch.{name}", generator_argument=True)

    def _wrap(self, owner, name, generator, shown, generator_argument=False):
        original = getattr(owner, name, None)
        if original is None or getattr(original, "_twinrun_watched", False):
            return
        watcher = self

        @functools.wraps(original)
        def draw(*args, **kwargs):
            frame = sys._getframe(1)
            key = (frame.f_code, frame.f_lineno)
            if key not in watcher._seen:
                watcher._seen.add(key)
                if not (generator_argument and kwargs.get("generator") is not None):
                    watcher._drawn(frame, generator, shown)
            return original(*args, **kwargs)

        draw._twinrun_watched = True
        setattr(owner, name, draw)

    def _drawn(self, frame, generator, shown):
        session = self.session
        if session.seeding or not session.is_user_file(frame.f_code.co_filename):
            return
        if self.in_model():
            return  # the model's own draws (a noise layer, dropout written by hand)
        session.add_finding(
            "global-generator-draw", frame,
            f"{shown} draws from {_LABEL[generator]}, the stream the model is seeded from",
            "The data's order or values and the model's weights and dropout share one stream: "
            "any change in one (a batch size, a layer added) moves the other, and one seed "
            "decides both.",
            f"Give it a generator of its own: {_OWN_GENERATOR[generator]}.")
