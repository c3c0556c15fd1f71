"""Operation-level localisation for PyTorch (plain, and Keras on the torch backend).

During a localisation rerun (`TWINRUN_LOCALIZE_STEP`) every ATen operation of the probed step
is recorded in call order: its name (`aten::convolution_backward`), a digest of its outputs,
the module (or Keras layer) it ran in, and the line of the user's code that called it. Two
replicas that part ways at that step then agree op for op up to the first one whose output
differs although its inputs were the same: that is where they part.

Forward ops take the line from the Python stack as they run. Backward ops run in the autograd
engine, called from `loss.backward()`; their line is the forward line that created their
autograd node, which autograd's anomaly mode stores in the node's metadata (`traceback_`,
torch/csrc/autograd/python_anomaly_mode.cpp) and `torch._C._current_autograd_node()` gives
back while the node runs. Their module is the one whose forward created the node: after each
module's forward, the new part of the graph behind its outputs is tagged with its name.
"""

import hashlib
import linecache
import os
import re
import sys
import sysconfig

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

MODULE_KEY = "twinrun_module"
_FRAME = re.compile(r'File "(?P<file>.+?)", line (?P<line>\d+), in ')


def _library_folders():
    import numpy

    folders = {os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # twinrun
               os.path.dirname(os.path.abspath(torch.__file__)),
               os.path.dirname(os.path.abspath(numpy.__file__))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            folders.add(os.path.abspath(path))
    keras = sys.modules.get("keras")
    if keras is not None and getattr(keras, "__file__", None):
        folders.add(os.path.dirname(os.path.abspath(keras.__file__)))
    return tuple(sorted(folders))


class OpRecorder:
    """Records every ATen op of one step while armed (see the module docstring).

    Arguments:
        names: `{id(module): name}` of the model's modules (for plain torch models).
        current_layer: optional callable giving the Keras layer that runs now (Keras layers are
            not called through `torch.nn.Module.__call__`, so module hooks do not see them).
        active: optional callable; ops are recorded only while it is true (Keras disarms the
            probe during validation batches).
    """

    def __init__(self, names=None, current_layer=None, active=None):
        self.names = dict(names or {})
        self.current_layer = current_layer
        self.active = active
        self.records = []
        self._mode = None
        self._anomaly = None
        self._handles = []
        self._stack = []
        self._backward_seen = False
        self._folders = _library_folders()

    # -- arming -------------------------------------------------------------------------------

    def arm(self, on):
        """Record from now on (True) or stop (False)."""
        if on and self._mode is None:
            self.records, self._stack, self._backward_seen = [], [], False
            from torch.nn.modules import module as module_hooks

            self._handles = [
                module_hooks.register_module_forward_pre_hook(self._enter_module),
                module_hooks.register_module_forward_hook(self._leave_module, always_call=True)]
            # Anomaly mode keeps each autograd node's forward stack; its NaN check is not
            # wanted (it would raise in a user's run).
            self._anomaly = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
            torch.autograd.set_detect_anomaly(True, check_nan=False)
            self._mode = _Mode(self)
            self._mode.__enter__()
        elif not on and self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
            torch.autograd.set_detect_anomaly(*self._anomaly)
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def tag(self, outputs, name):
        """Mark the graph behind a Keras layer's `outputs` as made by layer `name`."""
        if self._mode is not None and torch.is_grad_enabled():
            tag_graph(outputs, name)

    def take(self):
        """The records of the armed window, and a fresh list for the next."""
        records, self.records = self.records, []
        return records

    # -- modules ------------------------------------------------------------------------------

    def _enter_module(self, module, inputs):
        self._stack.append(self.names.get(id(module)))

    def _leave_module(self, module, inputs, output):
        if self._stack:
            self._stack.pop()
        name = self.names.get(id(module))
        if name is not None and torch.is_grad_enabled():
            tag_graph(output, name)

    def _module_now(self):
        if self.current_layer is not None:
            layer = self.current_layer()
            if layer is not None:
                return layer
        return next((n for n in reversed(self._stack) if n is not None), None)

    # -- ops ----------------------------------------------------------------------------------

    def record(self, func, outputs):
        if self.active is not None and not self.active():
            return
        node = torch._C._current_autograd_node()
        if node is not None:
            self._backward_seen = True
            phase = "backward"
            module = _node_metadata(node).get(MODULE_KEY)
            place = self._place_in_traceback(_node_metadata(node).get("traceback_"))
        else:
            phase = "update" if self._backward_seen else "forward"
            module = self._module_now()
            place = self._place_in_stack()
        entry = {"op": _op_name(func), "phase": phase, "module": module,
                 "output": _digest_outputs(outputs)}
        if place is not None:
            entry["file"], entry["line"] = place
            entry["code"] = linecache.getline(place[0], place[1]).strip()
        self.records.append(entry)

    def _is_user_file(self, filename):
        if not filename or filename.startswith("<frozen"):
            return False
        if filename.startswith("<"):
            return True  # a notebook cell or `python -c`
        path = os.path.abspath(filename)
        return not any(path.startswith(folder + os.sep) for folder in self._folders)

    def _place_in_stack(self):
        frame = sys._getframe(2)
        while frame is not None:
            if self._is_user_file(frame.f_code.co_filename):
                return frame.f_code.co_filename, frame.f_lineno
            frame = frame.f_back
        return None

    def _place_in_traceback(self, traceback):
        if not traceback:
            return None
        text = "".join(traceback) if isinstance(traceback, (list, tuple)) else str(traceback)
        places = [(m["file"], int(m["line"])) for m in _FRAME.finditer(text)]
        for filename, line in reversed(places):  # innermost last
            if self._is_user_file(filename):
                return filename, line
        return None


class _Mode(TorchDispatchMode):
    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        outputs = func(*args, **(kwargs or {}))
        self.recorder.record(func, outputs)
        return outputs


def tag_graph(outputs, name):
    """Mark the autograd nodes behind `outputs` that no inner module marked: `name` made them."""
    pending = [t.grad_fn for t in tree_leaves(outputs)
               if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    seen = set()
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        metadata = _node_metadata(node)
        if MODULE_KEY in metadata or type(node).__name__ == "AccumulateGrad":
            continue
        metadata[MODULE_KEY] = name
        pending.extend(next_node for next_node, _ in node.next_functions)


def _node_metadata(node):
    try:
        return node.metadata
    except (AttributeError, RuntimeError):
        return {}


def _op_name(func):
    name = func.name() if hasattr(func, "name") else str(func)
    return name.split(".")[0] if "::" in name else name


def _digest_outputs(outputs):
    h = hashlib.blake2b(digest_size=8)
    for value in tree_leaves(outputs):
        if not isinstance(value, torch.Tensor):
            continue
        if value.layout != torch.strided or value.device.type == "meta":
            h.update(b"unhashable")
            continue
        data = value.detach()
        if data.device.type != "cpu":
            data = data.cpu()
        h.update(str(data.dtype).encode())
        h.update(data.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
