"""One run seed, many sources of randomness: how twinrun derives a seed for each.

A run has one integer seed. Every source of randomness gets its own seed derived from it:

    seed_for(run_seed, source) = int.from_bytes(sha256(f"twinrun:{run_seed}:{source}")[:4], "big") & 0x7FFFFFFF

The derivation is a hash, not `run_seed + k`, so the seeds of neighbouring runs share nothing,
and each source can be varied on its own by changing only its entry (a study that varies the
data order keeps `init` and `dropout` fixed).

Ranges, and why:
- the run seed is an integer from 0 to 2**63 - 1: it is only hashed, never given to a
  framework, and the store keeps it as a signed 64-bit integer;
- every derived seed, and every override that replaces one (`derive_seeds(seed, overrides)`,
  `RunConfig.seed_overrides`), is an integer from 0 to 2**31 - 1, because these go into the
  frameworks as they are and 31 bits is what all of them take: Keras on the torch backend
  converts seeds to int32, NumPy's legacy `numpy.random.seed` takes below 2**32, Keras' JAX
  and TensorFlow generators keep them as uint32, and `PYTHONHASHSEED` takes below 2**32.

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

# The run seed of `twinrun train`/`check` without --seed, and of `twinrun.deterministic()` called
# with no seed outside `twinrun check`.
DEFAULT_SEED = 0

RUN_SEED_LIMIT = 2**63  # exclusive; the store keeps the run seed as a signed 64-bit integer
SOURCE_SEED_LIMIT = 2**31  # exclusive; Keras on torch converts seeds to int32


def validate_seed(seed):
    """Return the run seed if it is an integer from 0 to 2**63 - 1, else raise `TwinrunError`.

    Arguments:
        seed: the run seed.

    Example:
    >>> validate_seed(7)
    7
    """
    return _checked(seed, RUN_SEED_LIMIT, "the seed", "seed", "2**63 - 1")


def validate_source_seed(source, seed):
    """Return one source's seed if every framework can take it (0 to 2**31 - 1), else raise.

    Arguments:
        source: one of `SOURCES` (named in the error).
        seed: the seed that goes into the framework as it is.

    Example:
    >>> validate_source_seed("shuffle", 123)
    123
    """
    _validate_source(source)
    return _checked(seed, SOURCE_SEED_LIMIT, f"the {source!r} seed", source,
                    "2**31 - 1 (2147483647), the range every framework takes")


def _validate_source(source):
    if source not in SOURCES:
        from twinrun.errors import TwinrunError

        raise TwinrunError(
            f"Unknown source of randomness {source!r}: expected one of {', '.join(SOURCES)}.")


def _checked(seed, limit, what, name, bound):
    from twinrun.errors import TwinrunError

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TwinrunError(
            f"Expected {what} to be an integer from 0 to {bound}. Received: {name}={seed!r} "
            f"(of type {type(seed).__name__}).")
    if not 0 <= seed < limit:
        raise TwinrunError(
            f"Expected {what} to be an integer from 0 to {bound}. Received: {name}={seed}.")
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
        run_seed: the run's integer seed (0 to 2**63 - 1).
        overrides: optional `{source: seed}` that replaces single sources (a study varies one
            source while the others stay fixed); each from 0 to 2**31 - 1.

    Raises `TwinrunError` with one sentence for a seed out of range or an unknown source.

    Example:
    >>> derive_seeds(7, {"shuffle": 123})["shuffle"]
    123
    """
    validate_seed(run_seed)
    seeds = {source: seed_for(run_seed, source) for source in SOURCES}
    for source, value in (overrides or {}).items():
        seeds[source] = validate_source_seed(source, value)
    return seeds
