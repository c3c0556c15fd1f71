"""Keras (every backend): each `Model.fit` gets twinrun's trace callback, each fit a phase.

`Model.fit` is wrapped once Keras is imported. A fit whose callbacks already hold a
`twinrun.keras.Trace` is the script tracing itself, and is left alone (as is everything after
it). Otherwise a `HookedTrace` is appended: the ordinary `Trace`, writing into the shared trace
as one phase, with each batch's exact digest.

Batches: Keras feeds `fit` from its epoch iterator, which pulls every batch in Python on every
backend (Keras 3.x `EpochIterator`), so the training iterator of each hooked fit is wrapped and
each batch is digested on the host as it passes, in order; the callback takes them first in,
first out. With `steps_per_execution` above 1, Keras runs several batches per callback, so the
batch column then holds every n-th batch's digest only.
"""

import functools
from collections import deque

from twinrun.fingerprint import digest_arrays

_armed = []  # the tap the next EpochIterator (fit's training data) takes


def install(session, seeding):
    import keras
    from keras.src.trainers import epoch_iterator

    from twinrun.keras.callback import Trace

    original_fit = keras.Model.fit
    if getattr(original_fit, "_twinrun_hooked", False):
        return
    count = [0]

    @functools.wraps(original_fit)
    def fit(self, *args, **kwargs):
        if session.trace is None or session.explicit or session.in_fit:
            return original_fit(self, *args, **kwargs)
        positional = len(args) > 5
        callbacks = args[5] if positional else kwargs.get("callbacks")
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            return original_fit(self, *args, **kwargs)  # a CallbackList: left as given
        callbacks = list(callbacks or [])
        if any(isinstance(c, Trace) for c in callbacks):
            session.explicit = True
            return original_fit(self, *args, **kwargs)
        seeding.check_training("keras", ("keras", "tensorflow", "torch"))
        count[0] += 1
        tap = BatchTap()
        trace = HookedTrace(session, f"fit {count[0]} (model '{self.name}')", tap,
                            first=not session.trace.phases, where=session.where())
        callbacks.append(trace)
        if positional:
            args = args[:5] + (callbacks,) + args[6:]
        else:
            kwargs["callbacks"] = callbacks
        _armed[:] = [tap]
        session.in_fit = True
        try:
            return original_fit(self, *args, **kwargs)
        finally:
            session.in_fit = False
            _armed.clear()

    fit._twinrun_hooked = True
    keras.Model.fit = fit

    original_init = epoch_iterator.EpochIterator.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if _armed:
            tap = _armed.pop()
            get = self._get_iterator
            self._get_iterator = lambda: tap.wrap(get())

    epoch_iterator.EpochIterator.__init__ = __init__


class BatchTap:
    """The digests of the batches one fit trained on, first in, first out (what `Trace`
    reads from its `batches` argument)."""

    def __init__(self):
        self.batch_fingerprints = deque()
        self.record_fingerprints = False

    def wrap(self, iterable):
        for batch in iterable:
            self.batch_fingerprints.append(batch_digest(batch))
            yield batch


def batch_digest(batch):
    """The exact digest of one batch: every array in it, in order (any framework)."""
    import numpy as np

    arrays = []

    def add(item):
        if item is None:
            return
        if isinstance(item, dict):
            for key in sorted(item):
                add(item[key])
        elif isinstance(item, (list, tuple)):
            for part in item:
                add(part)
        elif hasattr(item, "detach"):  # torch
            arrays.append(item.detach().cpu().numpy())
        elif hasattr(item, "numpy") and not isinstance(item, np.ndarray):  # TensorFlow
            arrays.append(item.numpy())
        else:
            arrays.append(np.asarray(item))

    add(batch)
    return digest_arrays(arrays)


def _trace_class():
    from twinrun.keras.callback import Trace

    class HookedTrace(Trace):
        """`twinrun.keras.Trace` writing one phase of the shared trace."""

        def __init__(self, session, phase, tap, first, where=None):
            super().__init__(path=session.trace_path, batches=tap, snapshots=first)
            self._session = session
            self._phase = phase
            self._where = where

        def _open_writer(self):
            return self._session.trace.phase(self._phase, "keras", self._where)

        def on_train_begin(self, logs=None):
            self.step = self._session.trace.next_step
            if self.probe is not None:
                self.probe.current_step = self.step
            super().on_train_begin(logs)

    return HookedTrace


def HookedTrace(session, phase, tap, first, where=None):  # noqa: N802 - builds its class
    """A `twinrun.keras.Trace` for one phase (the class is made when Keras is imported)."""
    global _hooked_trace
    if _hooked_trace is None:
        _hooked_trace = _trace_class()
    return _hooked_trace(session, phase, tap, first, where)


_hooked_trace = None
