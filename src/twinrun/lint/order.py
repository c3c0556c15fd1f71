"""Data order that changes between runs: sets of strings, DataLoader workers, tf.data.

Python randomises the hash of every str and bytes per process (unless PYTHONHASHSEED is fixed
before it starts), and a set is laid out by hash: iterating over a set of strings gives another
order in every run, and with it other label indices or another file order. DataLoader workers
and a nondeterministic tf.data pipeline reorder or reseed the data in their own ways.
"""

import ast

from twinrun.lint.script import constant, keyword

# Consumers for which the order of what they get does not matter.
_ORDER_FREE = {"sorted", "set", "frozenset", "len", "sum", "min", "max", "any", "all"}
# Calls that turn a set's order into a sequence's order.
_ORDERING_CALLS = {"list", "tuple", "enumerate", "iter", "zip", "dict.fromkeys", "reversed"}
_SET_METHODS = {"union", "intersection", "difference", "symmetric_difference", "copy"}

_SET_WHY = ("A set of strings is ordered by hash, and Python randomises string hashing in "
            "every process unless PYTHONHASHSEED is fixed before it starts, so this order, and "
            "anything built from it (label indices, class lists, file order), changes from run "
            "to run.")
_SET_FIX = "Iterate over `sorted(...)` of the set instead."

# torch.utils.data.DataLoader's positional parameters, for arguments passed without a keyword.
_LOADER_POSITIONS = {"num_workers": 5, "worker_init_fn": 10, "generator": 12}
_TF_DATA_OPTIONS = {"deterministic", "experimental_deterministic"}


def set_iteration(script):
    """A finding where a set (not known to hold only numbers) is iterated in its own order."""
    set_names = _names_bound_to_sets(script)
    for node in script.nodes(ast.For, ast.AsyncFor, ast.comprehension, ast.Call):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            iterated, site = node.iter, node.iter
        elif isinstance(node, ast.comprehension):
            comprehension = _comprehension_of(script, node)
            if isinstance(comprehension, ast.SetComp) or _feeds_order_free(script, comprehension):
                continue
            iterated, site = node.iter, node.iter
        else:
            if (script.name(node.func) not in _ORDERING_CALLS and not _is_join(node)) or \
                    _feeds_order_free(script, node):
                continue
            iterated = next((a for a in node.args if _is_set(script, a, set_names)), None)
            site = node
        if iterated is None or not _is_set(script, iterated, set_names):
            continue
        yield script.finding(site, "set-order",
                             f"`{_short(ast.unparse(site))}` follows the order of a set",
                             _SET_WHY, _SET_FIX)


def dataloader_workers(script):
    """A finding for a DataLoader with worker processes but no `generator`/`worker_init_fn`."""
    for call in script.calls():
        name = script.name(call.func) or ""
        if name.rsplit(".", 1)[-1] != "DataLoader" or any(k.arg is None for k in call.keywords):
            continue
        workers = _argument(call, "num_workers")
        if workers is None or constant(workers, default=1) in (0, None):
            continue
        missing = [option for option in ("generator", "worker_init_fn")
                   if _argument(call, option) is None]
        if not missing:
            continue
        yield script.finding(
            call, "dataloader-workers",
            f"DataLoader with worker processes but no {' or '.join(missing)}",
            "Each worker's seeds, and the shuffle order, are drawn from torch's global "
            "generator when iteration starts, so they change whenever anything else drew from "
            "it first (one more layer, one more dropout call); and a generator your dataset "
            "made itself is copied unchanged into every worker.",
            "Pass `generator=torch.Generator().manual_seed(seed)` and "
            "`worker_init_fn=seed_worker`, where `seed_worker(worker_id)` seeds NumPy and "
            "`random` from `torch.initial_seed() % 2**32`, as PyTorch's reproducibility notes "
            "show.")


def tf_data_nondeterministic(script):
    """A finding for `deterministic=False` in tf.data calls and options."""
    why = ("With deterministic=False, tf.data hands out elements in the order its parallel "
           "calls finish, which depends on thread timing: the batches differ from run to run.")
    fix = "Remove `deterministic=False` (or set it to True); it trades reproducibility for speed."
    for call in script.calls():
        value = keyword(call, "deterministic")
        name = script.name(call.func) or ""
        if value is not None and constant(value) is False and not name.startswith("torch."):
            yield script.finding(call, "tf-data-nondeterministic",
                                 "a tf.data transformation with `deterministic=False`", why, fix)
    for node in script.nodes(ast.Assign):
        for target in node.targets:
            if (isinstance(target, ast.Attribute) and target.attr in _TF_DATA_OPTIONS
                    and constant(node.value) is False):
                yield script.finding(node, "tf-data-nondeterministic",
                                     f"tf.data option `{target.attr} = False`", why, fix)


def _argument(call, name):
    value = keyword(call, name)
    if value is None and len(call.args) > _LOADER_POSITIONS[name]:
        value = call.args[_LOADER_POSITIONS[name]]
    return value


def _is_join(call):
    return isinstance(call.func, ast.Attribute) and call.func.attr == "join"


def _comprehension_of(script, generator):
    return script.parents.get(generator)


def _feeds_order_free(script, node):
    """True when `node` is passed straight to a consumer that ignores order (`sorted(...)`)."""
    parent = script.parents.get(node)
    return (isinstance(parent, ast.Call) and node in parent.args
            and script.name(parent.func) in _ORDER_FREE)


def _is_set(script, node, set_names):
    if isinstance(node, (ast.Set, ast.SetComp)):
        return not _only_numbers(node)
    if isinstance(node, ast.Name):
        return node.id in set_names
    if isinstance(node, ast.Call):
        name = script.name(node.func)
        if name in ("set", "frozenset"):
            return bool(node.args) and not _only_numbers(node.args[0])
        if isinstance(node.func, ast.Attribute) and node.func.attr in _SET_METHODS:
            return _is_set(script, node.func.value, set_names)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.BitAnd, ast.Sub,
                                                            ast.BitXor)):
        return _is_set(script, node.left, set_names) or _is_set(script, node.right, set_names)
    return False


def _only_numbers(node):
    """True for `{1, 2}`, `[1, 2]`, `range(...)`: integers hash the same in every process."""
    if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
        return bool(node.elts) and all(isinstance(constant(e), (int, float)) and
                                       not isinstance(constant(e), bool) for e in node.elts)
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "range")


def _names_bound_to_sets(script):
    """Names whose every plain assignment in the script is a set of (maybe) strings."""
    verdicts = {}
    for node in script.nodes(ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                is_set = _is_set(script, node.value, set())
                verdicts[target.id] = verdicts.get(target.id, True) and is_set
    return {name for name, all_sets in verdicts.items() if all_sets}


def _short(text, width=60):
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
