"""Bit-exact fingerprints of tensors: exact host digests, and a few words per tensor computed on
the tensor's own device.

One module per framework (`numpy`, `tensorflow`, `jax`, `torch`) with the same `tensor_words`
function, which gives identical words for identical bits in every framework; the scheme is
defined in `twinrun.fingerprint.common` (scheme 2). `twinrun.fingerprint.exact` (scheme 3)
hashes the bytes of tensors in host memory instead; `trace_words_for` says which a tracer
uses. Importing this package imports no framework.
"""

import importlib

from twinrun.fingerprint.common import WORDS_PER_TENSOR, digest_arrays, words_to_hex

__all__ = ["WORDS_PER_TENSOR", "digest_arrays", "tensor_words_for", "trace_words_for",
           "words_to_hex"]

FRAMEWORKS = ("numpy", "tensorflow", "jax", "torch")


def tensor_words_for(backend):
    """The `tensor_words` function for a framework, imported only now.

    Arguments:
        backend: `"tensorflow"`, `"jax"`, `"torch"`, or `"numpy"` for host arrays.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 2)
        >>> words = tensor_words_for("torch")(list(model.parameters()))
        >>> words.shape, words.dtype  # (number of tensors, WORDS_PER_TENSOR)
        ((2, 3), dtype('uint32'))
    """
    if backend not in FRAMEWORKS:
        raise ValueError(f"Expected `backend` to be one of {', '.join(FRAMEWORKS)}. "
                         f"Received: backend={backend!r}")
    return importlib.import_module(f"twinrun.fingerprint.{backend}").tensor_words


# `twinrun check --against` sets it to the reference's scheme, so that a replay writes words
# the reference's words can be compared with.
SCHEME_VARIABLE = "TWINRUN_FINGERPRINT_SCHEME"


def trace_words_for(backend, tensors):
    """The step words a tracer records, and their scheme: `(tensor_words function, scheme)`.

    Scheme 3 (`twinrun.fingerprint.exact`: each tensor's bytes hashed in place) where the
    state lies in host memory and reducing it on a device saves nothing: torch on a CPU.
    Scheme 2 (`twinrun.fingerprint.common`: row sums on the tensor's device) elsewhere: GPUs,
    and TensorFlow and JAX, whose words are computed by their own compiled code. The
    environment variable `TWINRUN_FINGERPRINT_SCHEME` (2 or 3), when set, decides instead.

    Arguments:
        backend: `"tensorflow"`, `"jax"`, `"torch"` or `"numpy"`.
        tensors: the state's tensors as the tracer first sees them (their devices decide).

    Example:
        >>> import torch
        >>> trace_words_for("torch", [torch.zeros(3)])[1]
        3
    """
    import os

    from twinrun.errors import TwinrunError
    from twinrun.fingerprint import common, exact

    asked = os.environ.get(SCHEME_VARIABLE)
    if asked:
        if asked not in ("2", "3"):
            raise TwinrunError(f"{SCHEME_VARIABLE}={asked!r} is not a fingerprint scheme "
                               f"twinrun writes (2 or 3); unset it.")
        scheme = int(asked)
    else:
        devices = [getattr(common.unwrap_variable(t), "device", None) for t in tensors]
        on_host = all(device is not None and str(device) == "cpu" for device in devices)
        scheme = exact.SCHEME if backend == "torch" and on_host else common.SCHEME
    if scheme == exact.SCHEME:
        return exact.TensorWords(), scheme
    return tensor_words_for(backend), scheme
