"""Training batches in an order twinrun controls, with a fingerprint per batch."""

import math
from collections import deque

import numpy as np

from twinrun.fingerprint import digest_arrays


def shuffled_batches(x, y, batch_size, seed):
    """Training batches in an order drawn from `seed`: one permutation per epoch.

    A `keras.utils.PyDataset` rather than `fit(shuffle=True)`: each backend shuffles arrays
    with its own generator, so the data order would depend on the backend and could not be
    varied apart from the weight initialisation. Epoch e's order is
    `numpy.random.default_rng([seed, e]).permutation(n)`.

    Each batch's fingerprint (inputs and labels) is queued in `batch_fingerprints` when the
    batch is produced, for a trace to consume in step order.
    """
    import keras

    class ShuffledBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=2)
            self.epoch = 0
            self.batch_fingerprints = deque()
            self.record_fingerprints = False
            self._order = self._permutation()

        def _permutation(self):
            return np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, index):
            rows = self._order[index * batch_size:(index + 1) * batch_size]
            bx, by = x[rows], y[rows]
            if self.record_fingerprints:
                self.batch_fingerprints.append(digest_arrays([bx, by]))
            return bx, by

        def on_epoch_end(self):
            self.epoch += 1
            self._order = self._permutation()

    return ShuffledBatches()
