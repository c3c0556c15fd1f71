"""`Trace`: a Keras callback that writes a run's per-step trace (see `twinrun.trace`).

After every optimizer step it fingerprints every model variable on the device (BatchNorm
statistics included; only a few words per variable reach the host), the loss Keras reports,
and the batch when twinrun feeds the data. It must run synchronously after each step (it
reads the variables before the next step changes them), so it is not marked `async_safe`.
On TensorFlow the words are computed inside the compiled training step itself (see
`_InStepWords`) and the callback only collects them.
"""

import os
import time
from pathlib import Path

import keras
import numpy as np

from twinrun.errors import TwinrunError
from twinrun.fingerprint import digest_arrays, tensor_words_for
from twinrun.trace import TraceWriter
from twinrun.tracing import LayerProbe, Lockstep, process_facts, snapshot_due


class Trace(keras.callbacks.Callback):
    """Record a bit-exact per-step trace of a Keras training.

    Under `twinrun check` it writes where the launcher says (`TWINRUN_TRACE`); elsewhere give
    it a path.

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

    Example:
    >>> model.fit(x, y, epochs=2, callbacks=[twinrun.keras.Trace("run.trace", data=(x, y))])
    """

    def __init__(self, path=None, data=None, batches=None, snapshots=True, in_step=True):
        super().__init__()
        path = path or os.environ.get("TWINRUN_TRACE")
        if not path:
            raise TwinrunError(
                "twinrun.keras.Trace needs a file to write: pass Trace(path) or run the "
                "script under `twinrun check`.")
        self.path = Path(path)
        self.data = data
        self.batches = batches
        self.snapshots = snapshots
        self.step = 0
        self.epoch = 0
        self.writer = None
        self.lockstep = Lockstep.from_environment()
        self.probe = LayerProbe.from_environment()
        if self.probe is not None:
            self.probe.armed = False
        self.in_step = in_step
        self._in_step = None

    def set_model(self, model):
        super().set_model(model)
        if self.probe is not None and not getattr(model, "_twinrun_probed", False):
            # Layer outputs are only concrete values outside compiled functions.
            model.run_eagerly = True
            model.train_function = None
            self.probe.attach_keras(model)
            model._twinrun_probed = True
        if self.in_step and self._in_step is None and self.probe is None:
            self._in_step = _InStepWords.attach(model)

    def on_train_begin(self, logs=None):
        backend = keras.backend.backend()
        self._words = tensor_words_for(backend)
        self._weights = list(self.model.weights)
        self._state_index = _jax_state_index(self.model, self._weights)
        self.writer = TraceWriter(self.path)
        from twinrun.environment import fingerprint_environment

        self.writer.header(
            [v.path for v in self._weights], [list(v.shape) for v in self._weights],
            backend=backend, framework="keras", replica=os.environ.get("TWINRUN_REPLICA"),
            environment=fingerprint_environment(backend=backend),
            **process_facts(), started=time.time())
        if self.data is not None:
            arrays = [np.asarray(a) for a in (self.data if isinstance(self.data, (list, tuple))
                                              else [self.data])]
            self.writer.write({"kind": "data", "fingerprint": digest_arrays(arrays)})
        if self.batches is not None:
            self.batches.record_fingerprints = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.probe is not None:
            self.probe.armed = True

    def on_train_batch_end(self, batch, logs=None):
        if self.probe is not None:
            self.probe.armed = False
        loss = (logs or {}).get("loss")
        batch_fp = None
        if self.batches is not None and self.batches.batch_fingerprints:
            batch_fp = self.batches.batch_fingerprints.popleft()
        if self._in_step is not None:
            words = self._in_step.words()
        else:
            words = self._words(self._current_values())
        self.writer.step(self.step, self.epoch, batch_fp,
                         None if loss is None else float(loss), words.tolist())
        if self.probe is not None:
            self.probe.flush(self.writer, self.step)
        self.step += 1
        if self.lockstep is not None:
            self.lockstep.wait(self.step - 1)

    def _current_values(self):
        """Every variable's current value, fetched anew each step.

        Keras' JAX trainer keeps the training state outside the variables during `fit` (it
        empties them to save memory and donates each step's arrays to the next), so on JAX the
        values come from `model._jax_state`, without forcing a sync that would change how
        Keras runs.
        """
        # `self._model`, not `self.model`: Keras' `Callback.model` property syncs the JAX state
        # back into the variables on every access, which is the cost this avoids.
        model = self._model
        state = getattr(model, "_jax_state", None)
        if self._state_index is not None and state and not getattr(
                model, "_jax_state_synced", True):
            return [state[group][i] for group, i in self._state_index]
        return [v.value for v in self._weights]

    def on_epoch_end(self, epoch, logs=None):
        snapshot = None
        if self.snapshots and snapshot_due(epoch + 1):
            snapshot = f"{self.path.name}.epoch{epoch + 1}.npz"
            arrays = {f"v{i}": np.asarray(keras.ops.convert_to_numpy(value))
                      for i, value in enumerate(self._current_values())}
            np.savez(self.path.parent / snapshot, **arrays)
        self.writer.write({"kind": "epoch", "epoch": epoch + 1, "step": self.step,
                           "metrics": {k: float(v) for k, v in (logs or {}).items()},
                           "snapshot": snapshot})

    def on_train_end(self, logs=None):
        if self._in_step is not None:
            self._in_step.detach()
            self._in_step = None
        if self.writer is not None:
            self.writer.write({"kind": "end", "steps": self.step})
            self.writer.close()


def _jax_state_index(model, weights):
    """Where each weight lives in Keras' JAX training state, or None on other backends."""
    if keras.backend.backend() != "jax":
        return None
    position = {}
    for group in ("trainable_variables", "non_trainable_variables"):
        for i, variable in enumerate(getattr(model, group)):
            position.setdefault(id(variable), (group, i))
    if any(id(w) not in position for w in weights):
        return None
    return [position[id(w)] for w in weights]


class _InStepWords:
    """On TensorFlow, the fingerprint computed inside the compiled training step.

    The words of every variable are computed by the same XLA function as
    `twinrun.fingerprint.tensorflow.tensor_words`, as the last op of Keras' `train_step`
    (after the optimizer's updates: TensorFlow orders reads of a variable after the writes before
    them), and kept in a small variable the callback reads after the step. That saves a second
    function call and a second pass over weights that are no longer in the cache: on the seed
    CNN a traced step cost 2.41 ms more than an untraced one with the call after the step, and
    1.75 ms with it inside (bench/run.py --only step_time, docs/performance.md).

    `active` turns the computation off without retracing (the benchmarks' untraced blocks).
    """

    def __init__(self, model, slot, sizes, active):
        self.model = model
        self.slot = slot
        self.sizes = sizes
        self.active = active

    @classmethod
    def attach(cls, model):
        """Wrap `model.train_step`, or return None where the words are computed after the step
        (other backends, a model without variables yet, a step already wrapped, a
        distribution strategy)."""
        if keras.backend.backend() != "tensorflow" or "train_step" in vars(model):
            return None
        weights = list(model.weights)
        if not weights:
            return None
        import tensorflow as tf

        from twinrun.fingerprint import tensorflow as fingerprint_tf

        if getattr(model, "_distribute_strategy", None) is not None or tf.distribute.has_strategy():
            return None  # one slot variable cannot take every replica's words
        values = [w.value for w in weights]
        compiled = fingerprint_tf._function_for(values)
        slot = tf.Variable(tf.zeros([len(values), 2], tf.uint32), trainable=False)
        active = tf.Variable(True, trainable=False)
        original = model.train_step

        def train_step(data):
            logs = original(data)

            def fingerprint():
                slot.assign(compiled.function([w.value for w in weights]))
                return tf.constant(True)

            tf.cond(active, fingerprint, lambda: tf.constant(False))
            return logs

        model.train_step = train_step
        model.train_function = None  # Keras builds it again, from the wrapped step
        return cls(model, slot, compiled.sizes, active)

    def words(self):
        words = np.empty((len(self.sizes), 3), np.uint32)
        words[:, 0] = self.sizes
        words[:, 1:] = self.slot.numpy()
        return words

    def detach(self):
        """Give the model its own training step back (a later `fit` without a trace pays
        nothing)."""
        vars(self.model).pop("train_step", None)
        self.model.train_function = None
