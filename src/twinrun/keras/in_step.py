"""On TensorFlow, the fingerprint computed inside Keras' compiled training step."""

import keras
import numpy as np


class InStepWords:
    """The words of the training state, computed by the compiled training step itself.

    The words of every tracked variable (model, optimizer and random generator state) are
    computed by the same XLA function as `twinrun.fingerprint.tensorflow.tensor_words`, as the
    last op of Keras' `train_step` (after the optimizer's updates: TensorFlow orders reads of a
    variable after the writes before them), and kept in a small variable the callback reads
    after the step. That saves a second function call and a second pass over weights that are
    no longer in the cache: on the seed CNN a traced step cost 2.41 ms more than an untraced
    one with the call after the step, and 1.75 ms with it inside (bench/run.py --only
    step_time, docs/performance.md).

    `active` turns the computation off without retracing (the benchmarks' untraced blocks, or
    a training whose state grew after the step was compiled).
    """

    def __init__(self, model, variables, slot, sizes, active):
        self.model = model
        self.variables = variables
        self.slot = slot
        self.sizes = sizes
        self.active = active

    @classmethod
    def attach(cls, model, variables):
        """Wrap `model.train_step` to fingerprint `variables` (Keras variables), or return None
        where the words are computed after the step (other backends, a model without variables
        yet, a step already wrapped, a distribution strategy)."""
        if keras.backend.backend() != "tensorflow" or "train_step" in vars(model):
            return None
        variables = list(variables)
        if not variables or not model.weights:
            return None
        import tensorflow as tf

        from twinrun.fingerprint import tensorflow as fingerprint_tf

        if getattr(model, "_distribute_strategy", None) is not None or tf.distribute.has_strategy():
            return None  # one slot variable cannot take every replica's words
        values = [v.value for v in variables]
        compiled = fingerprint_tf._function_for(values)
        slot = tf.Variable(tf.zeros([len(values), 2], tf.uint32), trainable=False)
        active = tf.Variable(True, trainable=False)
        original = model.train_step

        def train_step(data):
            logs = original(data)

            def fingerprint():
                slot.assign(compiled.function([v.value for v in variables]))
                return tf.constant(True)

            tf.cond(active, fingerprint, lambda: tf.constant(False))
            return logs

        model.train_step = train_step
        model.train_function = None  # Keras builds it again, from the wrapped step
        return cls(model, variables, slot, compiled.sizes, active)

    def words(self):
        words = np.empty((len(self.sizes), 3), np.uint32)
        words[:, 0] = self.sizes
        words[:, 1:] = self.slot.value().numpy()  # half the time of `Variable.numpy()`
        return words

    def detach(self):
        """Give the model its own training step back (a later `fit` without a trace pays
        nothing)."""
        vars(self.model).pop("train_step", None)
        self.model.train_function = None
