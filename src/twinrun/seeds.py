"""One run seed, many sources of randomness: how twinrun derives a seed for each.

A run has one integer seed. Every source of randomness gets its own seed derived from it:

    seed_for(run_seed, source) = int.from_bytes(sha256(f"twinrun:{run_seed}:{source}")[:4], "big") & 0x7FFFFFFF

The derivation is a hash, not `run_seed + k`, so the seeds of neighbouring runs share nothing,
and each source can be varied on its own by changing only its entry (a study that varies the
data order keeps `init` and `dropout` fixed). 31 bits keep every framework happy (Keras and
TensorFlow seeds are signed 32-bit on some paths).

Sources:
- `python`: `random.seed`
- `numpy`: `numpy.random.seed` (the legacy global generator user code reaches for)
- `backend`: the framework's global generator (`tf.random.set_seed`, `torch.manual_seed`,
  Keras' global `SeedGenerator` on JAX)
- `init`: weight initialisers (each layer gets `init + layer_index`)
- `dropout`: dropout layers (each gets `dropout + layer_index`)
- `shuffle`: the order of training batches (a NumPy `Generator` that draws one permutation per
  epoch)
- `hash`: `PYTHONHASHSEED` of the fresh process (string hashing, set iteration order)
- `data`: synthetic data (the random inputs and labels of `answer-demo`)
"""

import hashlib

SOURCES = ("python", "numpy", "backend", "init", "dropout", "shuffle", "hash", "data")


def validate_seed(seed):
    """Return `seed` if it is a non-negative integer, else raise `TwinrunError`."""
    from twinrun.errors import TwinrunError

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TwinrunError(
            f"Expected the seed to be a non-negative integer. Received: seed={seed!r} "
            f"(of type {type(seed).__name__})."
        )
    if seed < 0 or seed >= 2**63:
        raise TwinrunError(
            f"Expected the seed to be a non-negative integer below 2**63. Received: seed={seed}."
        )
    return seed


def seed_for(run_seed, source):
    """The seed of one source of randomness, derived from the run seed.

    Arguments:
        run_seed: the run's integer seed.
        source: one of `SOURCES`.

    Example:
    >>> seed_for(7, "init") == seed_for(7, "init") != seed_for(7, "dropout")
    True
    """
    digest = hashlib.sha256(f"twinrun:{run_seed}:{source}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def derive_seeds(run_seed, overrides=None):
    """All derived seeds of a run as a dict `{source: seed}`.

    Arguments:
        run_seed: the run's integer seed.
        overrides: optional `{source: seed}` that replaces single sources (a study varies one
            source while the others stay fixed).
    """
    validate_seed(run_seed)
    seeds = {source: seed_for(run_seed, source) for source in SOURCES}
    for source, value in (overrides or {}).items():
        if source not in SOURCES:
            from twinrun.errors import TwinrunError

            raise TwinrunError(
                f"Unknown source of randomness {source!r}: expected one of {', '.join(SOURCES)}."
            )
        seeds[source] = validate_seed(value)
    return seeds
