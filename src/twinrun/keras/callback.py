"""`Trace`: a Keras callback that writes a run's per-step trace (see `twinrun.trace`).

After every optimizer step it fingerprints the whole training state on the device (the model's
variables with BatchNorm statistics, the optimizer's slots and iteration counter, the random
generators' states: see `twinrun.keras.state`; only a few words per tensor reach the host),
the batch's own loss, and the batch when twinrun feeds the data. It must run synchronously
after each step (it reads the variables before the next step changes them), so it is not
marked `async_safe`. On TensorFlow the words are computed inside the compiled training step
itself (see `twinrun.keras.in_step`) and the callback only collects them. At the end of every
epoch and of the training the same state is also digested exactly on the host
(`twinrun.trace.digests`).
"""

import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from twinrun.fingerprint import SCHEME_VARIABLE, digest_arrays, trace_words_for
from twinrun.keras.in_step import InStepWords
from twinrun.keras.state import (
    BatchLoss, build_optimizer, current_values, jax_state_index, training_state)
from twinrun.trace import TraceWriter
from twinrun.trace.digests import state_digest_record
from twinrun.trace.lockstep import Lockstep
from twinrun.trace.probe import LayerProbe
from twinrun.trace.recording import StateSchedule, process_facts, snapshot_due

class Trace(keras.callbacks.Callback):
    """Record a bit-exact per-step trace of a Keras training.

    Under `twinrun check` it writes where the launcher says (`TWINRUN_TRACE`); elsewhere give
    it a path. Without either (a plain `python train.py`) it records nothing and says so in
    one line on stderr, so a script written for `twinrun check` still runs as usual.

    Arguments:
        path: the trace file; default `$TWINRUN_TRACE`.
        data: optional `(x, y)` training arrays, fingerprinted once at the start so a change
            in the data (its order, a label mapping) is seen before step 0.
        batches: optional twinrun `ShuffledBatches` dataset whose per-batch fingerprints are
            recorded with each step.
        snapshots: save a weights snapshot (`.npz`) at the end of epochs, so the distance
            between replicas can be measured; True for the first 10 epochs and every 10th.
        in_step: on TensorFlow, compute the fingerprint inside the compiled training step
            (the same words, about half the cost); False computes it after the step, as on
            the other backends.
        trace_every: fingerprint the whole state every k-th step only (the batch and the
            loss are still recorded every step); default `$TWINRUN_TRACE_EVERY`, else 1.

    Example:
    >>> import keras, numpy as np, twinrun
    >>> from twinrun.trace import read_trace
    >>> x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> history = model.fit(x, y, batch_size=4, epochs=2, verbose=0,
    ...                     callbacks=[twinrun.keras.Trace("run.trace", data=(x, y))])
    >>> len(read_trace("run.trace").steps)  # 2 batches in each of 2 epochs
    4
    """

    def __init__(self, path=None, data=None, batches=None, snapshots=True, in_step=True,
                 trace_every=None):
        super().__init__()
        path = path or os.environ.get("TWINRUN_TRACE")
        self.enabled = bool(path)
        self._fit_logs = []  # each epoch's logs, for a study of the user's script
        if not self.enabled and not os.environ.get("TWINRUN_METRICS"):
            print("twinrun: Trace() records nothing in this run: it was given no file and is "
                  "not under `twinrun check` (pass Trace(path) to record one).",
                  file=sys.stderr)
        self.path = Path(path) if path else None
        self.data = data
        self.batches = batches
        self.snapshots = snapshots
        self.step = 0
        self.epoch = 0
        self.writer = None
        self.lockstep = Lockstep.from_environment() if self.enabled else None
        self.probe = LayerProbe.from_environment() if self.enabled else None
        if self.probe is not None:
            self.probe.armed = False
        self.in_step = in_step
        self.schedule = StateSchedule.from_environment(trace_every) if self.enabled else None
        self._in_step_on = True  # the in-step switch as last set
        self._in_step = None
        self._batch_loss = None
        self._loss_reported = False
        self._names = None

    def set_model(self, model):
        super().set_model(model)
        if not self.enabled:
            return
        if self.probe is not None and not getattr(model, "_twinrun_probed", False):
            # Layer outputs are only concrete values outside compiled functions.
            model.run_eagerly = True
            model.train_function = None
            self.probe.attach_keras(model)
            model._twinrun_probed = True
            if keras.backend.backend() == "torch":
                # Below every layer on torch: each ATen op (TensorFlow and JAX have no such
                # hook, so their finest place is the layer).
                from twinrun.torch.ops import OpRecorder

                probe = self.probe
                probe.watch_ops(OpRecorder(current_layer=probe.current_layer,
                                           active=lambda: probe.active))
        if self._batch_loss is None:
            self._batch_loss = BatchLoss.attach(model)
        # The in-step words are scheme 2's; a replay of a scheme-3 reference computes its
        # words after the step.
        if (self.in_step and self._in_step is None and self.probe is None
                and os.environ.get(SCHEME_VARIABLE) != "3"):
            if keras.backend.backend() == "tensorflow":
                build_optimizer(model)
            self._in_step = InStepWords.attach(model, [v for _, v in training_state(model)])

    def on_train_begin(self, logs=None):
        if not self.enabled:
            return
        backend = keras.backend.backend()
        state = training_state(self._model)
        self._words, scheme = trace_words_for(backend, [v for _, v in state])
        self._track(state)
        self._checked_state = False
        self.writer = self._open_writer()
        from twinrun.environment import fingerprint_environment

        self.writer.header(
            self._names, [list(v.shape) for v in self._variables],
            backend=backend, framework="keras", replica=os.environ.get("TWINRUN_REPLICA"),
            environment=fingerprint_environment(backend=backend), fingerprint_scheme=scheme,
            **process_facts(), **self.schedule.header(), started=time.time())
        if self.data is not None:
            arrays = [np.asarray(a) for a in (self.data if isinstance(self.data, (list, tuple))
                                              else [self.data])]
            self.writer.write({"kind": "data", "fingerprint": digest_arrays(arrays)})
        if self.batches is not None:
            self.batches.record_fingerprints = True

    def _open_writer(self):
        """The trace writer (`twinrun.hooks` gives its own, which keeps several fits in one
        trace)."""
        return TraceWriter(self.path)

    def _track(self, state):
        """Fingerprint these `(name, variable)` pairs from now on."""
        self._weights = list(self._model.weights)  # for the snapshots
        self._names = [name for name, _ in state]
        self._variables = [v for _, v in state]
        self._state_index = jax_state_index(self._model, self._variables)
        if self._in_step is not None and (
                [id(v) for v in self._in_step.variables] != [id(v) for v in self._variables]):
            # The state grew after the step was compiled: fingerprint it after the step.
            self._in_step.active.assign(False)
            self._in_step_used = False
        else:
            self._in_step_used = self._in_step is not None
        loss = self._batch_loss
        self._loss_index = (None if loss is None
                            else jax_state_index(self._model, [loss.variable]))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.probe is not None:
            self.probe.armed = True
        if self.enabled and self._in_step_used and self.schedule.sampled:
            due = self.schedule.due(self.step)
            if due != self._in_step_on:  # one assign per switch, not per step
                self._in_step.active.assign(due)
                self._in_step_on = due

    def on_train_batch_end(self, batch, logs=None):
        if not self.enabled:
            return
        if self.probe is not None:
            self.probe.armed = False
        extra = {}
        if not self._checked_state:
            # Keras creates some state inside the first step (TensorFlow's optimizer slots
            # when the model was built only then, the global generator on first use).
            self._checked_state = True
            # A custom train_step that reports no loss to Keras' tracker: null, not a stale 0.
            self._loss_reported = self._batch_loss is not None and self._batch_loss.called
            state = training_state(self._model)
            if [name for name, _ in state] != self._names:
                self._track(state)
                extra.update(names=self._names, shapes=[list(v.shape) for v in self._variables])
        running_mean = (logs or {}).get("loss")
        if running_mean is not None:
            extra["loss_running_mean"] = float(running_mean)
        batch_fp = None
        if self.batches is not None and self.batches.batch_fingerprints:
            batch_fp = self.batches.batch_fingerprints.popleft()
        words = []  # a sampled trace's step between two whole-state steps
        if self.schedule.due(self.step):
            words = (self._in_step.words() if self._in_step_used
                     else self._words(self._current_values())).tolist()
        self.writer.step(self.step, self.epoch, batch_fp, self._batch_loss_value(),
                         words, **extra)
        if self.probe is not None:
            self.probe.flush(self.writer, self.step)
        self.step += 1
        if self.lockstep is not None:
            self.lockstep.wait(self.step - 1)

    def _current_values(self):
        """Every tracked variable's current value (from the JAX training state on JAX)."""
        # `self._model`, not `self.model`: Keras' `Callback.model` property syncs the JAX state
        # back into the variables on every access, which is the cost this avoids.
        return current_values(self._model, self._variables, self._state_index)

    def _batch_loss_value(self):
        """The batch's own loss, exactly; None where the step reports none to Keras."""
        if not self._loss_reported:
            return None
        value = current_values(self._model, [self._batch_loss.variable], self._loss_index)[0]
        # A scalar of any float dtype is a Python float exactly. `float` reads it in one call;
        # `keras.ops.convert_to_numpy` took 0.4 ms a step on TensorFlow (three NumPy
        # conversions of the variable), most of what a sampled trace costs there.
        return float(value)

    def on_epoch_end(self, epoch, logs=None):
        self._fit_logs.append(dict(logs or {}))
        if not self.enabled:
            return
        snapshot = None
        if self.snapshots and snapshot_due(epoch + 1):
            snapshot = f"{self.path.name}.epoch{epoch + 1}.npz"
            weights = current_values(self._model, self._weights,
                                     jax_state_index(self._model, self._weights))
            arrays = {f"v{i}": np.asarray(keras.ops.convert_to_numpy(value))
                      for i, value in enumerate(weights)}
            np.savez(self.path.parent / snapshot, **arrays)
        self.writer.write({"kind": "epoch", "epoch": epoch + 1, "step": self.step,
                           "metrics": {k: float(v) for k, v in (logs or {}).items()},
                           "snapshot": snapshot})
        self.writer.write(self._digest_record(f"epoch {epoch + 1}"))

    def _digest_record(self, at):
        """The exact digest of the whole tracked state now (`twinrun.trace.digests`)."""
        arrays = [np.asarray(keras.ops.convert_to_numpy(value))
                  for value in self._current_values()]
        return state_digest_record(at, self._names, arrays)

    def on_train_end(self, logs=None):
        from twinrun.handoff import report_fit

        report_fit(self._fit_logs)  # a study of the script reads its metrics from fit
        if not self.enabled:
            return
        if self._in_step is not None:
            self._in_step.detach()
            self._in_step = None
        if self._batch_loss is not None:
            self._batch_loss.detach()
            self._batch_loss = None
        if self.writer is not None:
            self.writer.write(self._digest_record("end"))
            self.writer.write({"kind": "end", "steps": self.step})
            self.writer.close()
