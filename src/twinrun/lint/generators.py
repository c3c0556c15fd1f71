"""Random generators created without a seed: each run draws from fresh operating-system entropy.

A generator the script makes itself (`np.random.default_rng()`, `random.Random()`,
`torch.Generator()`) is not touched by `np.random.seed`, `random.seed` or
`twinrun.deterministic`: without a seed of its own it differs on every run.
"""

import ast

from twinrun.lint.script import constant, keyword

# Constructors (and re-seeding calls) that take their seed from the operating system when it is
# left out or None; the value is the keyword the seed may be passed as.
_SEED_ARGUMENT = {
    "numpy.random.default_rng": "seed",
    "numpy.random.RandomState": "seed",
    "numpy.random.SeedSequence": "entropy",
    "numpy.random.PCG64": "seed",
    "numpy.random.PCG64DXSM": "seed",
    "numpy.random.MT19937": "seed",
    "numpy.random.Philox": "seed",
    "numpy.random.SFC64": "seed",
    "numpy.random.seed": "seed",
    "random.Random": "x",
    "random.seed": "a",
}
# torch generators start from a fixed default seed, but `torch.seed()` and a Generator's
# `seed()` draw a nondeterministic one; a new Generator is seeded with `manual_seed`.
_TORCH_GENERATOR = "torch.Generator"
_SEEDING_METHODS = {"manual_seed", "set_state"}


def unseeded_generators(script):
    """A finding for every generator created, or re-seeded, without a seed."""
    seeded_names = _names_seeded_later(script)
    for call in script.calls():
        name = script.name(call.func)
        if name in _SEED_ARGUMENT and _seed_missing(call, _SEED_ARGUMENT[name]):
            yield _unseeded(script, call, name)
        elif name == _TORCH_GENERATOR and not _seeded_torch_generator(script, call,
                                                                       seeded_names):
            yield script.finding(
                call, "unseeded-generator", f"`{ast.unparse(call)}` is never given a seed",
                "A torch.Generator starts from torch's fixed default seed whatever "
                "`torch.manual_seed` or `twinrun.deterministic` set, so everything drawn from "
                "it (a DataLoader's shuffle, a random split) ignores the run's seed.",
                "Seed it from the run's seed: `torch.Generator().manual_seed(seed)`.")
        elif name in ("torch.seed", "tensorflow.random.Generator.from_non_deterministic_state"):
            yield _unseeded(script, call, name)


def _unseeded(script, call, name):
    return script.finding(
        call, "unseeded-generator", f"`{ast.unparse(call)}` takes its seed from the "
        "operating system",
        f"Without a seed, `{name.rsplit('.', 1)[-1]}` draws fresh entropy on every run, and "
        "no global seed (`np.random.seed`, `random.seed`, `twinrun.deterministic`) reaches it, "
        "so whatever uses it differs from run to run.",
        "Pass a seed derived from the run's seed, e.g. `np.random.default_rng(seed)` or "
        "`random.Random(seed)`.")


def _seed_missing(call, keyword_name):
    if call.args:
        return constant(call.args[0], default=...) is None
    if any(item.arg is None for item in call.keywords):  # **kwargs: cannot tell
        return False
    value = keyword(call, keyword_name)
    return value is None or constant(value, default=...) is None


def _seeded_torch_generator(script, call, seeded_names):
    parent = script.parents.get(call)
    if isinstance(parent, ast.Attribute) and parent.attr in _SEEDING_METHODS:
        return True
    if isinstance(parent, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id in seeded_names
                   for target in parent.targets)
    if isinstance(parent, ast.AnnAssign) and isinstance(parent.target, ast.Name):
        return parent.target.id in seeded_names
    # Passed straight to something else (`DataLoader(generator=torch.Generator())`): unseeded.
    return False


def _names_seeded_later(script):
    """Names on which the script calls `.manual_seed(...)` or `.set_state(...)` somewhere."""
    names = set()
    for call in script.calls():
        func = call.func
        if (isinstance(func, ast.Attribute) and func.attr in _SEEDING_METHODS
                and isinstance(func.value, ast.Name)):
            names.add(func.value.id)
    return names
