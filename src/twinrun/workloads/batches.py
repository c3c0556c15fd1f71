"""Training batches in an order twinrun controls, with a fingerprint per batch."""

import math
from collections import deque

import numpy as np

from twinrun.fingerprint import digest_arrays


def shuffled_batches(x, y, batch_size, seed):
    """Training batches in an order drawn from `seed`: one permutation per epoch.

    A `keras.utils.PyDataset` rather than `fit(shuffle=True)`: each backend shuffles arrays
    with its own generator, so the data order would depend on the backend and could not be
    varied apart from the weight initialisation. Epoch e's order (e = 0 for the first) is
    `numpy.random.default_rng([seed, e]).permutation(n)`, cut into batches in that order.

    Pass it to `fit` with `shuffle=False`: with `shuffle=True` (`fit`'s default) Keras would
    hand out the batches in an order of its own, drawn from Python's `random`; the dataset
    refuses batches asked for out of order, so that mistake cannot pass unseen. An epoch is a
    whole pass over the batches (with a single batch, a pass Keras reads ahead to build the
    model counts as one).

    Each batch's fingerprint (inputs and labels) is queued in `batch_fingerprints` when the
    batch is produced, for a trace to consume in step order.
    """
    import keras

    class ShuffledBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=2)
            self.epoch = 0  # epoch e reads permutation e
            self.batch_fingerprints = deque()
            self.record_fingerprints = False
            self._order = self._permutation()
            self._next = 0

        def _permutation(self):
            return np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, index):
            # An epoch is a whole pass, batch 0 to the last. Keras reads a batch or two before
            # training (TensorFlow to learn their shapes, JAX to build the model) and begins
            # again at batch 0: such a partial pass leaves the epoch's order as it was.
            if index == 0:
                self._next = 0
            if index != self._next:
                raise ValueError(
                    f"twinrun's batches were asked for out of order (batch {index} where "
                    f"batch {self._next} was next): pass `shuffle=False` to `fit`, since "
                    f"their order is already drawn from the shuffle seed.")
            self._next += 1
            rows = self._order[index * batch_size:(index + 1) * batch_size]
            bx, by = x[rows], y[rows]
            if self.record_fingerprints:
                self.batch_fingerprints.append(digest_arrays([bx, by]))
            if self._next == len(self):
                self.epoch += 1
                self._order = self._permutation()
            return bx, by

    return ShuffledBatches()
