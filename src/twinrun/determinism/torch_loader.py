"""PyTorch `DataLoader`s made deterministic while `deterministic()` is on.

What torch does by itself (torch/utils/data/_utils/worker.py, since torch 1.9): each time a
loader is iterated it draws a base seed from `loader.generator`, or from torch's global
generator when the loader has none, and every worker seeds `random` and torch with
`base + worker_id` and NumPy's global generator with a hash of both. So once torch's global
generator is seeded (which `deterministic()` does, also with determinism off), workers draw
the same NumPy numbers in every run, and no two workers draw the same ones: the classic
pitfall, every worker repeating one NumPy stream, is gone from torch itself.

What is left, and what twinrun does about it while determinism is on:

- A loader without a `generator` takes its shuffle order and its workers' base seed from
  torch's global generator, so both move when the model draws one random number more or less
  first (another initialiser, a dropout layer), and a study that varies `order` cannot vary
  them alone. Loaders made from now on without a generator, that shuffle or have workers, get
  their own, seeded from the `shuffle` seed (each loader another one, by creation order); under
  a study that varies `order`, the script counts as reading that seed.
- A `worker_init_fn` that reseeds from the OS or the clock (`np.random.seed()`, advice still
  copied from pytorch/pytorch#5059) undoes torch's seeding. After the user's function,
  twinrun seeds `random`, NumPy's global generator and torch again exactly as torch had, so
  the dataset draws what it would have drawn without it.
- `in_order=False` hands batches over as workers finish them, so the order depends on timing;
  it is set back to `True` (as TensorFlow's op determinism does with tf.data's
  `deterministic=False`).

What no one can fix from outside: a generator the dataset creates itself without a seed
(`np.random.default_rng()`), and numbers the user's `worker_init_fn` draws after reseeding
from the OS. Seed those from `torch.utils.data.get_worker_info().seed`.

Only the `DataLoader` class is patched, and only while determinism is on; torch is imported
by the caller (`twinrun.determinism.torch`), never here at import time.
"""

import hashlib
import inspect
import random

_original_init = None
_state = {"shuffle": None, "made": 0}


def loader_seed(shuffle_seed, index):
    """The seed of the `index`-th DataLoader made in a run whose `shuffle` seed is given.

    Arguments:
        shuffle_seed: the run's derived `shuffle` seed (see `twinrun.seeds`).
        index: 0 for the first loader made after `deterministic()`, 1 for the next, ...

    Example:
    >>> loader_seed(5, 0) == loader_seed(5, 0) != loader_seed(5, 1)
    True
    """
    digest = hashlib.sha256(f"twinrun:{shuffle_seed}:dataloader:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def is_patched():
    """True while `DataLoader`s are being made deterministic in this process."""
    return _original_init is not None


def patch(torch, shuffle_seed):
    """Make `DataLoader`s created from now on deterministic (see the module's docstring).

    Calling it again restarts the loader count with the new seed; `unpatch()` undoes it.
    Returns whether this torch's `DataLoader` has `in_order` (torch 2.6 and later).
    """
    global _original_init
    loader = torch.utils.data.DataLoader
    if _original_init is None:
        _original_init = loader.__init__
        signature = inspect.signature(_original_init)

        def __init__(self, *args, **kwargs):
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:  # let torch say what is wrong with the arguments
                return _original_init(self, *args, **kwargs)
            _fill_defaults(torch, bound.arguments)
            return _original_init(*bound.args, **bound.kwargs)

        __init__.__wrapped__ = _original_init
        __init__.__doc__ = _original_init.__doc__
        loader.__init__ = __init__
    _state.update(shuffle=shuffle_seed, made=0)
    return "in_order" in inspect.signature(_original_init).parameters


def unpatch(torch):
    """Give `DataLoader` back its own `__init__` (determinism turned off)."""
    global _original_init
    if _original_init is not None:
        torch.utils.data.DataLoader.__init__ = _original_init
        _original_init = None


def _fill_defaults(torch, arguments):
    workers = arguments.get("num_workers", 0)
    has_workers = isinstance(workers, int) and workers > 0
    if arguments.get("generator") is None and (arguments.get("shuffle") or has_workers):
        seed = loader_seed(_state["shuffle"], _state["made"])
        _state["made"] += 1
        arguments["generator"] = torch.Generator().manual_seed(seed)
        _tell_a_study(_state["shuffle"])
    user_init = arguments.get("worker_init_fn")
    if has_workers and user_init is not None and not isinstance(user_init, ReseedAfter):
        arguments["worker_init_fn"] = ReseedAfter(user_init)
    if arguments.get("in_order") is False:
        arguments["in_order"] = True


def _tell_a_study(shuffle_seed):
    # Under `twinrun variance --vary order` this loader's order follows the study's order seed
    # when deterministic() took its seeds from the study; say so, or the study would report
    # that the script never read the `order` seed.
    import os

    from twinrun import handoff

    if not os.environ.get(handoff.METRICS_VAR):
        return
    given = handoff.launcher_seeds()
    if given and given.get("shuffle") == shuffle_seed:
        handoff._note_read("order")


class ReseedAfter:
    """A worker's init function: the user's, then torch's own worker seeding again.

    A class, not a closure, so that workers started with `spawn` or `forkserver` can unpickle
    it (the user's function must be picklable there anyway).

    Arguments:
        user_init: the `worker_init_fn` the user gave the `DataLoader`.
    """

    def __init__(self, user_init):
        self.user_init = user_init

    def __call__(self, worker_id):
        self.user_init(worker_id)
        seed_like_torch(worker_id)


def seed_like_torch(worker_id):
    """Seed `random`, NumPy's global generator and torch in this worker as torch's worker loop
    does before any `worker_init_fn` runs."""
    import numpy as np
    import torch

    seed = torch.utils.data.get_worker_info().seed  # torch's base seed + worker_id
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(_numpy_seed(seed - worker_id, worker_id))


def _numpy_seed(base_seed, worker_id):
    try:
        from torch.utils.data._utils.worker import _generate_state
    except ImportError:  # a torch that moved it: another seed, still one per worker and run
        import numpy as np

        return np.random.SeedSequence([base_seed, worker_id]).generate_state(4)
    return _generate_state(base_seed, worker_id)
