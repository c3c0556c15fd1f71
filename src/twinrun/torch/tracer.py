"""`Tracer`: the per-step trace of a plain PyTorch training loop (see `twinrun.trace`).

Every step fingerprints the whole training state on its device: the model's parameters and
buffers (BatchNorm running statistics too), the optimizer's state (`optimizer/<parameter>/<key>`:
Adam's `exp_avg`, `exp_avg_sq` and `step`, SGD's momentum buffers, ...) and its numeric
hyperparameters (`optimizer/group<i>/hyperparameters`: a scheduler's learning rate), and the
random generators' states (`rng/torch_cpu`, and `rng/torch_cuda<i>` once CUDA is initialised).
At the end of every epoch and of the run the same tensors are also digested exactly on the host
(`twinrun.trace.digests`).
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from twinrun.fingerprint import digest_arrays, trace_words_for
from twinrun.trace import TraceWriter
from twinrun.trace.digests import state_digest_record
from twinrun.trace.lockstep import Lockstep
from twinrun.trace.probe import LayerProbe, host_digest
from twinrun.trace.recording import StateSchedule, process_facts, snapshot_due


class Tracer:
    """Record a bit-exact per-step trace of a PyTorch training loop.

    Call `step(loss, batch)` after `optimizer.step()`, and `epoch_end(metrics)` after each
    epoch (optional). The training state (see the module's docstring) is fingerprinted on its
    device; only a few words per tensor reach the host.

    Under `twinrun check` it writes where the launcher says (`TWINRUN_TRACE`); elsewhere give
    it a path. Without either (a plain `python train.py`) it records nothing and says so in
    one line on stderr, so a script written for `twinrun check` still runs as usual.

    Arguments:
        model: the `torch.nn.Module` being trained.
        optimizer: its optimizer, whose state is fingerprinted too (None: the model only).
        path: the trace file; default `$TWINRUN_TRACE` (set by `twinrun check`).
        data: optional training tensors/arrays, fingerprinted once at the start.
        snapshots: save a weights snapshot (`.npz`) at the end of epochs (see `epoch_end`).
        trace_every: fingerprint the whole state every k-th step only (the batch and the
            loss are still recorded every step); default `$TWINRUN_TRACE_EVERY`, else 1.

    Example:
    >>> import torch, twinrun
    >>> from twinrun.trace import read_trace
    >>> model = torch.nn.Linear(4, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> x, y = torch.ones(8, 4), torch.zeros(8, 1)
    >>> with twinrun.torch.Tracer(model, optimizer, path="run.trace") as tracer:
    ...     for step in range(3):
    ...         optimizer.zero_grad()
    ...         loss = torch.nn.functional.mse_loss(model(x), y)
    ...         loss.backward()
    ...         optimizer.step()
    ...         tracer.step(loss, (x, y))
    >>> len(read_trace("run.trace").steps)
    3
    """

    def __init__(self, model, optimizer=None, path=None, data=None, snapshots=True,
                 trace_every=None):
        path = path or os.environ.get("TWINRUN_TRACE")
        self.enabled = bool(path)
        self.model = model
        self.optimizer = optimizer
        self.path = Path(path) if path else None
        self.snapshots = snapshots
        self.count = 0
        self.epoch = 0
        self.writer = None
        if not self.enabled:
            print("twinrun: Tracer records nothing in this run: it was given no file and is "
                  "not under `twinrun check` (pass Tracer(model, optimizer, path=...) to "
                  "record one).", file=sys.stderr)
            return
        self._words, self._scheme = trace_words_for(
            "torch", list(model.parameters()) + list(model.buffers()))
        self.schedule = StateSchedule.from_environment(trace_every)
        self._named = list(model.named_parameters()) + list(model.named_buffers())
        self._tensors = [t for _, t in self._named]
        self._parameter_names = {p: name for name, p in model.named_parameters()}
        names, tensors = self._state()
        self._names = names
        self.writer = self._open_writer()
        from twinrun.environment import fingerprint_environment

        self.writer.header(names, [list(t.shape) for t in tensors],
                           backend="torch", framework="torch",
                           replica=os.environ.get("TWINRUN_REPLICA"),
                           environment=fingerprint_environment(backend="torch"),
                           fingerprint_scheme=self._scheme, **process_facts(),
                           **self.schedule.header(), started=time.time())
        if data is not None:
            arrays = [_to_numpy(a) for a in (data if isinstance(data, (list, tuple)) else [data])]
            self.writer.write({"kind": "data", "fingerprint": digest_arrays(arrays)})
        self.lockstep = Lockstep.from_environment()
        self.probe = LayerProbe.from_environment()
        if self.probe is not None:
            self._attach_hooks()

    def step(self, loss=None, batch=None):
        """Record the optimizer step just taken: the batch's loss, the batch and the state."""
        if not self.enabled:
            return
        batch_fp = self._batch_fingerprint(batch)
        loss_value = None if loss is None else float(loss.detach() if hasattr(loss, "detach")
                                                      else loss)
        extra = {}
        words = []  # a sampled trace's step between two whole-state steps
        if self.schedule.due(self.count):
            names, tensors = self._state()
            if names != self._names:
                # Optimizers create their state at their first step (or a parameter's first
                # gradient): the step record says which tensors it holds from now on.
                self._names = names
                extra = {"names": names, "shapes": [list(t.shape) for t in tensors]}
            words = self._words(tensors).tolist()
        self.writer.step(self.count, self.epoch, batch_fp, loss_value, words, **extra)
        if self.probe is not None:
            self.probe.flush(self.writer, self.count)
        self.count += 1
        if self.lockstep is not None:
            self.lockstep.wait(self.count - 1)

    def _open_writer(self):
        """The trace writer (`twinrun.hooks` gives its own, which keeps several optimizers in
        one trace)."""
        return TraceWriter(self.path)

    def _batch_fingerprint(self, batch):
        """The exact digest of the batch (`twinrun.hooks` digests the model's inputs instead)."""
        if batch is None:
            return None
        items = batch if isinstance(batch, (list, tuple)) else [batch]
        return digest_arrays([_to_numpy(b) for b in items])

    def _state(self):
        """Names and tensors of the whole training state, in a stable order: the model's, the
        optimizer's (as `optimizer.state_dict()` holds it, by parameter name), the random
        generators'."""
        names = [name for name, _ in self._named]
        tensors = list(self._tensors)
        if self.optimizer is not None:
            for g, group in enumerate(self.optimizer.param_groups):
                for i, parameter in enumerate(group["params"]):
                    state = self.optimizer.state.get(parameter)
                    if not state:
                        continue
                    owner = self._parameter_names.get(parameter, f"group{g}.param{i}")
                    for key in sorted(state):
                        tensor = _state_tensor(state[key])
                        if tensor is not None:
                            names.append(f"optimizer/{owner}/{key}")
                            tensors.append(tensor)
                numbers = _hyperparameters(group)
                if numbers:
                    names.append(f"optimizer/group{g}/hyperparameters")
                    tensors.append(torch.tensor(numbers, dtype=torch.float64))
        names.append("rng/torch_cpu")
        tensors.append(torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for index in range(torch.cuda.device_count()):
                names.append(f"rng/torch_cuda{index}")
                tensors.append(torch.cuda.get_rng_state(index))
        return names, tensors

    def epoch_end(self, metrics=None):
        """Record the end of an epoch (and a weights snapshot for distance measurements)."""
        if not self.enabled:
            return
        self.epoch += 1
        snapshot = None
        if self.snapshots and snapshot_due(self.epoch):
            snapshot = f"{self.path.name}.epoch{self.epoch}.npz"
            np.savez(self.path.parent / snapshot,
                     **{f"v{i}": _to_numpy(t) for i, t in enumerate(self._tensors)})
        self.writer.write({"kind": "epoch", "epoch": self.epoch, "step": self.count,
                           "metrics": {k: float(v) for k, v in (metrics or {}).items()},
                           "snapshot": snapshot})
        self.writer.write(self._digest_record(f"epoch {self.epoch}"))

    def close(self):
        """Record the end of the run (with the exact digest of the final state) and close
        the file."""
        if self.writer is not None:
            self.writer.write(self._digest_record("end"))
            self.writer.write({"kind": "end", "steps": self.count})
            self.writer.close()
            self.writer = None

    def _digest_record(self, at):
        """The exact digest of the whole training state now (`twinrun.trace.digests`)."""
        names, tensors = self._state()
        return state_digest_record(at, names, [_exact_numpy(t) for t in tensors])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _attach_hooks(self):
        probe = self.probe
        probe.armed = True
        from twinrun.torch.ops import OpRecorder

        names = {id(m): name or type(m).__name__ for name, m in self.model.named_modules()}
        probe.watch_ops(OpRecorder(names, active=lambda: probe.active))

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
            if not parameter.requires_grad:
                continue  # frozen: it has no gradient to probe
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


# Dtypes NumPy has no type for (bfloat16, float8) are digested as integers of their width.
_BITS_BY_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _exact_numpy(tensor):
    """The tensor's bits as a host NumPy array (its own dtype where NumPy has it)."""
    tensor = tensor.detach().cpu()
    if tensor.is_complex():
        return tensor.resolve_conj().numpy()
    try:
        return tensor.resolve_neg().numpy()
    except TypeError:  # bfloat16, float8: no NumPy dtype
        return tensor.contiguous().view(_BITS_BY_SIZE[tensor.element_size()]).numpy()


def _state_tensor(value):
    """A tensor for one entry of an optimizer's per-parameter state (None for what is no
    number: a missing momentum buffer)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(value, dtype=torch.float64)  # older optimizers keep `step` as int
    return None


def _hyperparameters(group):
    """A parameter group's numeric settings (lr, betas, eps, ...), in key order."""
    numbers = []
    for key in sorted(group):
        if key == "params":
            continue
        values = group[key] if isinstance(group[key], (list, tuple)) else [group[key]]
        for value in values:
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                numbers.append(float(value))
    return numbers
