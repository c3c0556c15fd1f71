"""Layer probes for localisation: each layer's input and output, and each gradient, at one step."""

import os
import sys

import numpy as np


def host_digest(value):
    """Exact digest of one concrete tensor (any framework) via its bytes on the host."""
    from twinrun.fingerprint import digest_arrays

    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu().numpy()
    return digest_arrays([np.asarray(value)])


class LayerProbe:
    """Fingerprints each layer's input and output, and each gradient, at one step.

    Used by localisation reruns (`TWINRUN_LOCALIZE_STEP`): the first layer whose output
    differs between replicas although its input was the same is where they part ways.
    """

    def __init__(self, step):
        self.step = step
        self.current_step = 0
        self.armed = True  # Keras disarms it outside training batches (validation)
        self.forward = []
        self.backward = []
        # A framework's op recorder (`twinrun.torch.ops.OpRecorder`), armed for the probed
        # step only: torch has a hook below every layer, TensorFlow and JAX have none.
        self.ops = None
        self._layers = []  # the Keras layers whose call runs now, innermost last

    @classmethod
    def from_environment(cls):
        value = os.environ.get("TWINRUN_LOCALIZE_STEP")
        return cls(int(value)) if value not in (None, "") else None

    @property
    def active(self):
        return self.armed and self.current_step == self.step

    def watch_ops(self, recorder):
        """Record every framework op of the probed step with `recorder` (which has `arm(on)`,
        `take()` and `tag(outputs, layer_name)`)."""
        self.ops = recorder
        recorder.arm(self.current_step == self.step)

    def current_layer(self):
        """The name of the Keras layer whose call runs now, or None."""
        return self._layers[-1] if self._layers else None

    def _emit(self, tensor, store):
        """Digest `tensor` now, or when JAX makes it concrete (inside a traced function)."""
        if type(tensor).__module__.startswith("jax") and "Tracer" in type(tensor).__name__:
            import jax

            jax.debug.callback(lambda v: store(host_digest(v)), tensor, ordered=False)
        else:
            store(host_digest(tensor))

    def attach_keras(self, model):
        """Wrap every layer's `call` and the optimizer's `apply` of a Keras model."""
        for layer in _leaf_layers(model):
            self._wrap_keras_layer(layer)
        self._wrap_keras_optimizer(model)

    def _wrap_keras_layer(self, layer):
        original = layer.call
        probe = self

        def call(*args, **kwargs):
            probe._layers.append(layer.name)
            try:
                outputs = original(*args, **kwargs)
            finally:
                probe._layers.pop()
            if probe.ops is not None and probe.active:
                probe.ops.tag(outputs, layer.name)
            if probe.active and args:
                entry = {"layer": layer.name, "class": type(layer).__name__}
                probe.forward.append(entry)
                probe._emit(args[0], lambda d: entry.__setitem__("input", d))
                first = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
                probe._emit(first, lambda d: entry.__setitem__("output", d))
            return outputs

        object.__setattr__(layer, "call", call)

    def _wrap_keras_optimizer(self, model):
        optimizer = model.optimizer
        owner = {}
        for layer in _leaf_layers(model):
            for variable in layer.weights:
                owner.setdefault(id(variable), layer)
        variables = [(v.path, owner.get(id(v))) for v in model.trainable_weights]
        probe = self

        def record(grads):
            if not probe.active or probe.backward:
                return  # one record per step, even if apply() calls stateless_apply()
            # Backward order: the last layer's gradients are computed first.
            for (name, layer), grad in reversed(list(zip(variables, grads))):
                entry = {"variable": name,
                         "layer": layer.name if layer is not None else name.rsplit("/", 1)[0],
                         "class": type(layer).__name__ if layer is not None else None}
                probe.backward.append(entry)
                probe._emit(grad, lambda d, e=entry: e.__setitem__("grad", d))

        if hasattr(optimizer, "stateless_apply"):
            stateless = optimizer.stateless_apply

            def stateless_apply(optimizer_variables, grads, trainable_variables):
                record(grads)
                return stateless(optimizer_variables, grads, trainable_variables)

            object.__setattr__(optimizer, "stateless_apply", stateless_apply)
        apply = optimizer.apply

        def apply_wrapped(grads, trainable_variables=None):
            record(grads)
            return apply(grads, trainable_variables)

        object.__setattr__(optimizer, "apply", apply_wrapped)

    def flush(self, writer, step):
        """Write the layers record once the probed step is done."""
        if step == self.step:
            if "jax" in sys.modules:
                import jax

                jax.effects_barrier()  # digests of traced values arrive through callbacks
            record = {"kind": "layers", "step": step, "forward": self.forward,
                      "backward": self.backward}
            if self.ops is not None:
                record["ops"] = self.ops.take()
            writer.write(record)
            self.forward, self.backward = [], []
        self.current_step = step + 1
        if self.ops is not None:
            self.ops.arm(self.current_step == self.step)


def _leaf_layers(model):
    """Layers in call order, nested models opened up."""
    import keras

    result = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            result.extend(_leaf_layers(layer))
        else:
            result.append(layer)
    return result
