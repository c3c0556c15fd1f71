"""`Tracer`: the per-step trace of a plain PyTorch training loop (see `twinrun.trace`)."""

import os
import time
from pathlib import Path

import numpy as np
import torch

from twinrun.errors import TwinrunError
from twinrun.fingerprint import digest_arrays, tensor_words_for
from twinrun.trace import TraceWriter
from twinrun.tracing import LayerProbe, Lockstep, host_digest, process_facts, snapshot_due


class Tracer:
    """Record a bit-exact per-step trace of a PyTorch training loop.

    Call `step(loss, batch)` after `optimizer.step()`, and `epoch_end(metrics)` after each
    epoch (optional). Parameters and buffers (BatchNorm running statistics too) are
    fingerprinted on their device; only a few words per tensor reach the host.

    Arguments:
        model: the `torch.nn.Module` being trained.
        optimizer: its optimizer (unused today; kept so optimizer state can be traced later).
        path: the trace file; default `$TWINRUN_TRACE` (set by `twinrun check`).
        data: optional training tensors/arrays, fingerprinted once at the start.

    Example:
    >>> tracer = twinrun.torch.Tracer(model, optimizer)
    >>> for x, y in loader:
    ...     optimizer.zero_grad(); loss = loss_fn(model(x), y); loss.backward()
    ...     optimizer.step(); tracer.step(loss, (x, y))
    >>> tracer.close()
    """

    def __init__(self, model, optimizer=None, path=None, data=None, snapshots=True):
        path = path or os.environ.get("TWINRUN_TRACE")
        if not path:
            raise TwinrunError(
                "twinrun.torch.Tracer needs a file to write: pass Tracer(model, path=...) or "
                "run the script under `twinrun check`.")
        self.model = model
        self.optimizer = optimizer
        self.path = Path(path)
        self.snapshots = snapshots
        self.count = 0
        self.epoch = 0
        self._words = tensor_words_for("torch")
        self._named = list(model.named_parameters()) + list(model.named_buffers())
        self._tensors = [t for _, t in self._named]
        self.writer = TraceWriter(self.path)
        from twinrun.environment import fingerprint_environment

        self.writer.header([n for n, _ in self._named], [list(t.shape) for t in self._tensors],
                           backend="torch", framework="torch",
                           replica=os.environ.get("TWINRUN_REPLICA"),
                           environment=fingerprint_environment(backend="torch"),
                           **process_facts(), started=time.time())
        if data is not None:
            arrays = [_to_numpy(a) for a in (data if isinstance(data, (list, tuple)) else [data])]
            self.writer.write({"kind": "data", "fingerprint": digest_arrays(arrays)})
        self.lockstep = Lockstep.from_environment()
        self.probe = LayerProbe.from_environment()
        if self.probe is not None:
            self._attach_hooks()

    def step(self, loss=None, batch=None):
        """Record the optimizer step just taken: the loss, the batch and every tensor."""
        batch_fp = None
        if batch is not None:
            items = batch if isinstance(batch, (list, tuple)) else [batch]
            batch_fp = digest_arrays([_to_numpy(b) for b in items])
        loss_value = None if loss is None else float(loss.detach() if hasattr(loss, "detach")
                                                      else loss)
        words = self._words(self._tensors)
        self.writer.step(self.count, self.epoch, batch_fp, loss_value, words.tolist())
        if self.probe is not None:
            self.probe.flush(self.writer, self.count)
        self.count += 1
        if self.lockstep is not None:
            self.lockstep.wait(self.count - 1)

    def epoch_end(self, metrics=None):
        """Record the end of an epoch (and a weights snapshot for distance measurements)."""
        self.epoch += 1
        snapshot = None
        if self.snapshots and snapshot_due(self.epoch):
            snapshot = f"{self.path.name}.epoch{self.epoch}.npz"
            np.savez(self.path.parent / snapshot,
                     **{f"v{i}": _to_numpy(t) for i, t in enumerate(self._tensors)})
        self.writer.write({"kind": "epoch", "epoch": self.epoch, "step": self.count,
                           "metrics": {k: float(v) for k, v in (metrics or {}).items()},
                           "snapshot": snapshot})

    def close(self):
        self.writer.write({"kind": "end", "steps": self.count})
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _attach_hooks(self):
        probe = self.probe
        probe.armed = True

        for name, module in self.model.named_modules():
            if list(module.children()):
                continue  # leaves only: a container's output is its last leaf's

            def forward_hook(mod, inputs, output, name=name):
                if probe.active and mod.training and inputs:
                    first = output[0] if isinstance(output, (list, tuple)) else output
                    probe.forward.append({"layer": name, "class": type(mod).__name__,
                                          "input": host_digest(inputs[0]),
                                          "output": host_digest(first)})

            module.register_forward_hook(forward_hook)

        modules = dict(self.model.named_modules())
        for name, parameter in reversed(list(self.model.named_parameters())):
            layer = name.rsplit(".", 1)[0] if "." in name else ""
            kind = type(modules.get(layer, self.model)).__name__

            def grad_hook(grad, name=name, layer=layer, kind=kind):
                if probe.active:
                    probe.backward.append({"variable": name, "layer": layer or name,
                                           "class": kind, "grad": host_digest(grad)})

            parameter.register_hook(grad_hook)


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
