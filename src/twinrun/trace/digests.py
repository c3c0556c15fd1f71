"""Exact digests of the whole training state, at every epoch's end and at the run's end.

The per-step words (`twinrun.fingerprint.common`) are a few 32-bit sums per tensor: cheap
enough for every step, but a change built to keep those sums (see the README's "What the
fingerprint covers") passes them. So at the points where copying the state to the host costs
nothing next to an epoch, every tracer also writes each tensor's exact xxh3-128 digest
(`digest_arrays`: dtype, shape and every byte) and one digest of them all:

    {"kind": "digest", "at": "epoch 3" | "end", "names": [...], "tensors": [hex, ...],
     "digest": hex}

The tensors are the ones the step words cover (variables, optimizer slots and counters,
generator states), in the same order. A reader places the record after the step records read
before it (`Trace.digests`: `{"after": steps, ...}`), so the replicas' records meet by
position whatever the tracer counted.
"""

import xxhash

import numpy as np

from twinrun.fingerprint import digest_arrays

DIGEST = "digest"


def state_digest_record(at, names, arrays):
    """The digest record of the state `names` -> `arrays` (host arrays, exact bits).

    Arguments:
        at: where in the run: `"epoch N"` (after N epochs) or `"end"`.
        names: the tensors' names, as in the step records.
        arrays: their values as NumPy arrays (a dtype NumPy lacks, such as bfloat16, as the
            unsigned integers of its width: the same bits).

    Example:
    >>> record = state_digest_record("end", ["w"], [np.zeros(2, "float32")])
    >>> record["kind"], record["at"], len(record["digest"])
    ('digest', 'end', 32)
    """
    tensors = [digest_arrays([array]) for array in arrays]
    whole = xxhash.xxh3_128()
    for name, tensor in zip(names, tensors):
        whole.update(f"{name}\0{tensor}\0".encode())
    return {"kind": DIGEST, "at": at, "names": list(names), "tensors": tensors,
            "digest": whole.hexdigest()}


def first_digest_difference(traces):
    """The earliest digest point where a replica's state differs from replica 0's, or None.

    Arguments:
        traces: the replicas' `Trace`s, replica 0 first. Points are matched by position
            (steps read before them) and `at`; a point missing from a replica (one stopped
            early) is not compared.

    Returns `{"after": steps, "at": ..., "tensors": [names that differ], "digests": [the
    whole-state digest of each replica]}` for the earliest differing point.

    Example:
    >>> from twinrun.trace import Trace
    >>> a, b = Trace("a"), Trace("b")
    >>> a.digests.append(dict(state_digest_record("end", ["w"], [np.zeros(2)]), after=5))
    >>> b.digests.append(dict(state_digest_record("end", ["w"], [np.ones(2)]), after=5))
    >>> first_digest_difference([a, b])["tensors"]
    ['w']
    """
    if len(traces) < 2:
        return None
    points = [{(d["after"], d["at"]): d for d in t.digests} for t in traces]
    for key in sorted(points[0], key=lambda k: (k[0], k[1] == "end")):
        records = [p.get(key) for p in points]
        reference = records[0]
        others = [r for r in records[1:] if r is not None]
        if all(r["digest"] == reference["digest"] for r in others):
            continue
        differing = []
        for other in others:
            if other["digest"] == reference["digest"]:
                continue
            if other["names"] != reference["names"] or len(other["tensors"]) != len(
                    reference["tensors"]):
                _add(differing, "(the list of tensors)")
            for name, a, b in zip(reference["names"], reference["tensors"], other["tensors"]):
                if a != b:
                    _add(differing, name)
        return {"after": key[0], "at": key[1], "tensors": differing,
                "digests": [r["digest"] if r is not None else None for r in records]}
    return None


def _add(names, name):
    if name not in names:
        names.append(name)
