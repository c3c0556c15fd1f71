"""Bit-exact fingerprints of tensors: exact host digests, and a few words per tensor computed on
the tensor's own device.

One module per framework (`numpy`, `tensorflow`, `jax`, `torch`) with the same `tensor_words`
function, which gives identical words for identical bits in every framework; the scheme is
defined in `twinrun.fingerprint.common`. Importing this package imports no framework.
"""

import importlib

from twinrun.fingerprint.common import WORDS_PER_TENSOR, digest_arrays, words_to_hex

__all__ = ["WORDS_PER_TENSOR", "digest_arrays", "tensor_words_for", "words_to_hex"]

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
