"""TensorFlow 1 seeding and session calls, which TensorFlow 2 and Keras 3 do not use the way
the script expects.

`tf.compat.v1.set_random_seed` seeds only TensorFlow's own ops: Keras 3 draws its initializer
and dropout seeds from Python's `random` module, which it leaves alone. A `ConfigProto`'s
thread settings apply only to ops run through `Session.run`, which Keras 3 never calls; and
Keras 3 has no `set_session` at all (`K.set_session` raises AttributeError there).
"""

import ast

_SEEDING = {"set_random_seed"}
_SESSIONS = {"ConfigProto", "Session", "InteractiveSession"}
_TENSORFLOW_ROOTS = {"tensorflow", "tf"}

_SEED_FIX = ("Call `keras.utils.set_random_seed(seed)`, which seeds Python, NumPy and the "
             "backend, or `twinrun.deterministic(seed)`, which also turns on op determinism.")
_THREADS_FIX = ("Delete the session lines; pin the thread pools with "
                "`tf.config.threading.set_intra_op_parallelism_threads(1)` and "
                "`tf.config.threading.set_inter_op_parallelism_threads(1)` before the first op, "
                "or `twinrun.deterministic(seed, threads=1)`.")


def tf1_calls(script):
    """A finding for every TF1 seeding call, `ConfigProto`, `Session` and `set_session`."""
    for call in script.calls():
        name = script.name(call.func)
        if not name:
            continue
        parts = name.split(".")
        last, shown = parts[-1], _as_written(call.func)
        if last == "set_session" and len(parts) > 1:
            yield script.finding(
                call, "tf1-api", f"`{shown}` is a TensorFlow 1 session call",
                "Keras 3 never uses a TensorFlow session, so whatever the session was "
                "configured with (threads, seeds) does not reach training; Keras 3 has no "
                "`set_session`, and this line raises AttributeError there.",
                _THREADS_FIX)
        elif parts[0] in _TENSORFLOW_ROOTS and last in _SEEDING:
            yield script.finding(
                call, "tf1-api", f"`{shown}` is TensorFlow 1 seeding",
                "It seeds TensorFlow's own random ops only: Keras 3 draws the seeds of its "
                "initializers and dropout layers from Python's `random` module, which this "
                "call leaves alone, so unless that is seeded too the model starts differently "
                "on every run.",
                _SEED_FIX)
        elif parts[0] in _TENSORFLOW_ROOTS and last in _SESSIONS:
            yield script.finding(
                call, "tf1-api", f"`{shown}` is a TensorFlow 1 session API",
                "Its settings (thread pools, seeds) apply only to ops run through "
                "`Session.run`; TensorFlow 2 runs eagerly and Keras 3's `fit` never uses the "
                "session, so the threads are not pinned and the results may still vary.",
                _THREADS_FIX)


def _as_written(node):
    """The callee as the script spells it (`tf.compat.v1.Session`), for the title."""
    return ast.unparse(node)
