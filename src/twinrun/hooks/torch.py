"""Plain PyTorch: every optimizer step traced, each optimizer a phase.

Three global hooks, installed when the script imports torch:
- a forward pre-hook on every module (`register_module_forward_pre_hook`), with a forward hook
  that always runs, to keep the nesting depth: the outermost module called with gradients on
  is the model, and its inputs (positional tensors) are the batch, digested exactly;
- `Tensor.backward` is wrapped to keep the tensor it was called on: the loss, when it is one
  number (a `torch.autograd.backward(...)` call is not seen: the loss is then null);
- an optimizer step post-hook (`register_optimizer_step_post_hook`) records the step with
  `twinrun.torch.Tracer`'s fingerprint of the whole training state (the model that owns the
  optimizer's parameters, the optimizer's state, the generator).

Steps of another optimizer are another phase; alternating optimizers (a GAN) switch phases
every step, and each switch is marked in the trace.
"""

import os
import types

from twinrun.fingerprint import digest_arrays


class TorchHooks:
    def __init__(self, session, seeding, draws):
        self.session = session
        self.seeding = seeding
        self.draws = draws
        self.depth = 0
        self.models = []        # outermost modules trained since the last step, newest last
        self.batch_parts = []   # digests of their inputs
        self.loss = None
        self.tracers = {}       # id(optimizer) -> HookedTracer
        self.checked_explicit = False
        self.probe = None
        self._started = False

    def install(self, torch):
        from torch.nn.modules import module as module_hooks
        from torch.optim import optimizer as optimizer_hooks

        from twinrun.trace.probe import LayerProbe

        self.probe = LayerProbe.from_environment()
        module_hooks.register_module_forward_pre_hook(self.before_forward)
        module_hooks.register_module_forward_hook(self.after_forward, always_call=True)
        optimizer_hooks.register_optimizer_step_post_hook(self.after_step)
        original = torch.Tensor.backward
        hooks = self

        def backward(tensor, *args, **kwargs):
            if hooks.active and tensor.numel() == 1:
                hooks.loss = tensor.detach()
            return original(tensor, *args, **kwargs)

        backward.__doc__ = original.__doc__
        torch.Tensor.backward = backward
        self.draws.in_model = lambda: self.depth > 0
        self.draws.watch_torch(torch)

    @property
    def active(self):
        session = self.session
        return session.trace is not None and not session.explicit and not session.in_fit

    def before_forward(self, module, inputs):
        if self.depth == 0 and module.training and self.active:
            import torch

            if torch.is_grad_enabled() and not _is_keras_layer(module):
                if not any(m is module for m in self.models):
                    self.models.append(module)
                self.batch_parts.append(_digest_inputs(inputs))
                if self.probe is not None and not getattr(module, "_twinrun_probed", False):
                    _attach_probe(module, self.probe)
        self.depth += 1

    def after_forward(self, module, inputs, output):
        self.depth = max(0, self.depth - 1)

    def after_step(self, optimizer, args, kwargs):
        if not self.active:
            return
        session = self.session
        if not self.checked_explicit:
            self.checked_explicit = True
            path = session.trace_path
            if os.path.exists(path) and os.path.getsize(path) > 0 and not session.trace.phases:
                session.explicit = True  # a twinrun.torch.Tracer of the script's own
                return
        tracer = self.tracers.get(id(optimizer))
        if tracer is None:
            self.seeding.check_training("torch", ("torch",))
            tracer = self._tracer(optimizer)
            self.tracers[id(optimizer)] = tracer
        if len(self.batch_parts) == 1:
            batch = self.batch_parts[0]
        elif self.batch_parts:
            import numpy as np

            joined = bytes.fromhex("".join(self.batch_parts))
            batch = digest_arrays([np.frombuffer(joined, np.uint8)])
        else:
            batch = None
        loss, self.loss, self.batch_parts = self.loss, None, []
        self.models = self.models[-1:]
        tracer.count = session.trace.next_step
        tracer.step(loss, batch)

    def _tracer(self, optimizer):
        import torch

        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        model = None
        for candidate in reversed(self.models):
            if any(id(p) in owned for p in candidate.parameters()):
                model = candidate
                break
        if model is None:  # parameters trained without a module call: trace them alone
            model = torch.nn.ParameterList(
                [p for group in optimizer.param_groups for p in group["params"]])
        number = len(self.tracers) + 1
        phase = (f"optimizer {number} ({type(optimizer).__name__} of "
                 f"{type(model).__name__})")
        return _tracer_class()(self.session, phase, model, optimizer,
                               first=not self.session.trace.phases, probe=self.probe,
                               where=self.session.where())


def _is_keras_layer(module):
    """Keras layers are torch modules on Keras' torch backend; Keras traces them itself."""
    import sys

    keras = sys.modules.get("keras")
    if keras is None:
        return False
    return isinstance(module, keras.layers.Layer)


def _digest_inputs(inputs):
    arrays = []
    for value in inputs:
        if hasattr(value, "detach"):
            arrays.append(value.detach().cpu().numpy())
    return digest_arrays(arrays)


def _attach_probe(module, probe):
    """Localisation reruns: the layer probe on `module`'s layers before its first forward (the
    tracer is made only at the first optimizer step, after that forward)."""
    from twinrun.torch.tracer import Tracer

    Tracer._attach_hooks(types.SimpleNamespace(model=module, probe=probe))
    module._twinrun_probed = True


_tracer = None


def _tracer_class():
    global _tracer
    if _tracer is not None:
        return _tracer
    from twinrun.torch.tracer import Tracer

    class HookedTracer(Tracer):
        """`twinrun.torch.Tracer` writing one phase of the shared trace; `step` is given the
        batch's digest, made from the model's inputs."""

        def __init__(self, session, phase, model, optimizer, first, probe, where=None):
            self._session = session
            self._phase = phase
            self._where = where
            self._shared_probe = probe
            super().__init__(model, optimizer, path=session.trace_path, snapshots=first)
            if probe is not None and getattr(model, "_twinrun_probed", False):
                self.probe = probe

        def _open_writer(self):
            writer = self._session.trace.phase(self._phase, "torch", self._where)
            writer.final_digest = lambda: self._digest_record("end")
            return writer

        def _batch_fingerprint(self, batch):
            return batch

        def _attach_hooks(self):
            if getattr(self.model, "_twinrun_probed", False):
                return
            super()._attach_hooks()
            self.model._twinrun_probed = True

    _tracer = HookedTracer
    return _tracer
