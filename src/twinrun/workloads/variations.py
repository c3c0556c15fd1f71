"""What a study changes in a built-in workload: which images train and validate, per-layer
seeds, and the first-layer perturbation.

- `training_indices`: the stratified subset, then either the stratified train/validation split
  (`val_fraction`, `random_state=split_seed`) or one fold of
  `StratifiedKFold(n_splits, shuffle=True, random_state)`.
- `layer_seed`: `seed + k` for layer k, wrapped below 2**31 (Keras on torch keeps seeds as int32).
- `perturbed_kernel` / `perturb_first_layer`: Summers & Dinneen's one-ulp change of one weight
  (`np.nextafter` towards +inf), or the answer's uniform noise on half of the weights.

NumPy and scikit-learn only; the Keras model is touched only through its variables'
`numpy()` and `assign()`, which every Keras backend has.
"""

import math

import numpy as np

from twinrun.errors import TwinrunError
from twinrun.workloads.options import SPLIT_RANDOM_STATE, VAL_FRACTION

SEED_MODULUS = 2**31  # every framework takes seeds below it (see `twinrun.seeds`)


def layer_seed(seed, k):
    """The seed of layer `k`'s initialiser or dropout: `seed + k`, modulo 2**31.

    Arguments:
        seed: the source's seed (`seeds["init"]` or `seeds["dropout"]`), 0 to 2**31 - 1.
        k: the layer's index among the initialised (or dropout) layers.

    Without the modulo a derived seed near 2**31 - 1 plus k overflows the int32 Keras' torch
    backend converts seeds to.

    Example:
    >>> layer_seed(2**31 - 1, 2)
    1
    """
    return (int(seed) + int(k)) % SEED_MODULUS


def subset_indices(labels, subset=None):
    """Indices of a stratified subset of `subset` images (all of them for None).

    Arguments:
        labels: the class of every image.
        subset: how many to draw; None, or the total, keeps every image in its order.

    The draw always uses `random_state=42`, the seed's: a study of `split` changes which of
    the same images validate, not which images the run sees at all.

    Example:
    >>> labels = np.repeat(np.arange(10), 20)
    >>> np.bincount(labels[subset_indices(labels, 100)]).tolist()
    [10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    total, classes = labels.size, np.unique(labels).size
    everything = np.arange(total)
    if subset is None or subset == total:
        return everything
    if not classes <= subset <= total - classes:
        raise TwinrunError(
            f"Expected --set subset to be from {classes} to {total - classes} (a stratified draw "
            f"needs every class on both sides), or {total} for every image. Received: "
            f"subset={subset}.")
    chosen, _ = train_test_split(everything, train_size=subset, stratify=labels,
                                 random_state=SPLIT_RANDOM_STATE)
    return chosen


def validate_folds(n_splits, labels=None):
    """Return `n_splits` if `StratifiedKFold(n_splits)` can split `labels`, else refuse.

    Arguments:
        n_splits: the number of folds (`--folds`).
        labels: the training labels; None checks only that `n_splits` is at least 2.

    Every fold must hold at least one image of every class, so `n_splits` may not exceed
    the smallest class's count.

    Example:
    >>> validate_folds(5, [0] * 10 + [1] * 10)
    5
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
        raise TwinrunError(
            f"Expected --folds to be at least 2, since cross-validation holds out one fold "
            f"and trains on the others. Received: folds={n_splits!r}.")
    if labels is not None:
        import numpy as np

        classes, counts = np.unique(np.asarray(labels).ravel(), return_counts=True)
        if classes.size == 0:
            raise TwinrunError("There are no training labels to split into folds; check the "
                               "data set and the --set subset value.")
        smallest = int(counts.min())
        if n_splits > smallest:
            raise TwinrunError(
                f"Class {classes[counts.argmin()]}, the smallest class, has only {smallest} "
                f"images, so --folds {n_splits} would leave a fold without it; use at most "
                f"{smallest} folds or a larger --set subset.")
    return n_splits


def training_indices(labels, *, subset=None, val_fraction=VAL_FRACTION,
                     split_seed=SPLIT_RANDOM_STATE, fold=None):
    """Which training images a run trains on and which it validates (early-stops) on.

    Arguments:
        labels: the class of every image of the full training set.
        subset: a stratified subset to use (see `subset_indices`), None for all.
        val_fraction: the share of the subset held out for validation, stratified, with
            `random_state=split_seed` (scikit-learn rounds the held-out count up).
        split_seed: that split's `random_state`.
        fold: `{"n_splits", "index", "random_state"}`: instead of the split, fold `index` of
            `StratifiedKFold(n_splits, shuffle=True, random_state)` over the subset validates
            and the other folds train.

    Returns `(train, val)`, arrays of indices into `labels`.

    Example:
    >>> labels = np.repeat(np.arange(10), 20)
    >>> train, val = training_indices(labels, val_fraction=0.4)
    >>> len(train), len(val)
    (120, 80)
    >>> folds = [training_indices(labels, fold={"n_splits": 5, "index": i, "random_state": 0})
    ...          for i in range(5)]
    >>> sorted(np.concatenate([val for _, val in folds]).tolist()) == list(range(200))
    True
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    labels = np.asarray(labels)
    pool = subset_indices(labels, subset)
    pool_labels = labels[pool]
    classes = np.unique(pool_labels).size
    if fold is not None:
        validate_folds(fold["n_splits"], pool_labels)
        folds = StratifiedKFold(n_splits=fold["n_splits"], shuffle=True,
                                random_state=fold["random_state"])
        train, val = list(folds.split(pool, pool_labels))[fold["index"]]
        return pool[train], pool[val]
    held_out = math.ceil(val_fraction * pool.size)
    if not classes <= held_out <= pool.size - classes:
        raise TwinrunError(
            f"--set val_fraction={val_fraction:g} of {pool.size} images holds out {held_out}, "
            f"but a stratified split needs at least one image of each of the {classes} classes "
            f"on both sides; pick a val_fraction nearer 0.5 or a larger --set subset.")
    train, val = train_test_split(pool, test_size=val_fraction, stratify=pool_labels,
                                  random_state=split_seed)
    return train, val


def perturbed_kernel(kernel, perturb_seed, noise=None):
    """A copy of `kernel` with one weight moved by one ulp, or half of them given noise.

    Arguments:
        kernel: the first layer's weights (float32).
        perturb_seed: seeds `numpy.random.default_rng`, which picks the weight(s).
        noise: None for Summers & Dinneen's change: the weight at flat index
            `rng.integers(size)` becomes `np.nextafter(w, +inf)`. A number `eps` for the
            answer's experiment: `rng.choice(size, size // 2, replace=False)` picks half of
            the weights and `rng.uniform(-eps, eps)` is added to each (in float64, then
            rounded back to the kernel's dtype).

    Returns `(new_kernel, record)`; `record` says what changed, for the run's result: `mode`
    (`"ulp"` or `"noise"`), and `index`, `position`, `before`, `after` for one ulp, or
    `noise`, `indices` and `changed` (how many weights ended with other bits: noise far below
    a weight's ulp rounds away) for noise.

    Example:
    >>> kernel = np.full((3, 3), 0.5, dtype=np.float32)
    >>> new, record = perturbed_kernel(kernel, 7)
    >>> int((new != kernel).sum()), record["after"] == float(np.nextafter(np.float32(0.5), np.inf))
    (1, True)
    """
    kernel = np.asarray(kernel)
    flat = kernel.reshape(-1).copy()
    rng = np.random.default_rng(perturb_seed)
    if noise is None:
        index = int(rng.integers(flat.size))
        before = flat[index]
        flat[index] = np.nextafter(before, np.array(np.inf, dtype=flat.dtype))
        record = {"mode": "ulp", "index": index,
                  "position": [int(i) for i in np.unravel_index(index, kernel.shape)],
                  "before": float(before), "after": float(flat[index])}
    else:
        chosen = np.sort(rng.choice(flat.size, flat.size // 2, replace=False))
        shift = rng.uniform(-noise, noise, size=chosen.size)
        flat[chosen] = (flat[chosen].astype(np.float64) + shift).astype(flat.dtype)
        record = {"mode": "noise", "noise": float(noise), "indices": chosen.tolist(),
                  "changed": int(np.count_nonzero(flat != kernel.reshape(-1)))}
    return flat.reshape(kernel.shape), record


def perturb_first_layer(model, perturb_seed, noise=None):
    """Apply `perturbed_kernel` to the kernel of `model`'s first layer that has one.

    Arguments:
        model: a built Keras model (before training).
        perturb_seed: seeds the choice of weight(s).
        noise: None for one ulp, else the uniform noise's size (see `perturbed_kernel`).

    Returns the record of `perturbed_kernel` with the layer's name added. Every other seed
    and weight is left as it was: assigning a variable draws nothing from any generator.

    Example:

        model = fashion_cnn.build_model(seeds)
        perturb_first_layer(model, 123)["layer"]  # 'conv1'
    """
    layer = next((layer for layer in model.layers if getattr(layer, "kernel", None)
                  is not None), None)
    if layer is None:
        raise TwinrunError(f"The model {model.name!r} has no layer with a kernel to perturb.")
    new, record = perturbed_kernel(np.asarray(layer.kernel.numpy()), perturb_seed, noise)
    layer.kernel.assign(new)
    return {"layer": layer.name, "variable": "kernel", **record}
