"""The built-in workloads' batches come in the documented order, on every backend: epoch e
(0 for the first) takes `numpy.random.default_rng([seed, e]).permutation(n)`, cut into
batches in that order; `fit`'s own shuffling is refused, not silently added on top."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import require
from test_training_state import SCRIPTS, plain_env
from twinrun.fingerprint import digest_arrays


def documented_batches(n=22, batch_size=4, seed=5, epochs=3):
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    y = np.zeros((n, 1), np.float32)
    fingerprints = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for first in range(0, n, batch_size):
            rows = order[first:first + batch_size]
            fingerprints.append(digest_arrays([x[rows], y[rows]]))
    return fingerprints


def run_fit(backend, *args):
    require(backend)
    require("keras")
    done = subprocess.run([sys.executable, str(SCRIPTS / "batch_order.py"), *args],
                          env=plain_env(KERAS_BACKEND=backend), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_each_epoch_takes_the_documented_permutation(backend):
    assert run_fit(backend) == {"fingerprints": documented_batches()}


def test_fits_own_shuffle_is_refused_in_one_sentence():
    result = run_fit("jax", "--shuffle")
    assert "asked for out of order" in result["error"]
    assert "pass `shuffle=False` to `fit`" in result["error"]
