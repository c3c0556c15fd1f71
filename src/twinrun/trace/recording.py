"""What every tracer records besides the tensors: the process facts that decide
reproducibility, and when to save weight snapshots."""

import os


def snapshot_due(epoch):
    """Save weights after epochs 1-10, then every 10th: enough to see the distance grow
    without filling the disk on a 200-epoch run."""
    return epoch <= 10 or epoch % 10 == 0


def process_facts():
    """Facts about this process that decide reproducibility but are no package or CPU fact:
    the hash seed (and a probe hash, which differs between processes when hashing is
    randomised), and the twinrun settings the launcher passed."""
    return {
        "hash_seed": os.environ.get("PYTHONHASHSEED"),
        "hash_probe": hash("twinrun-hash-probe"),
        "determinism": os.environ.get("TWINRUN_DETERMINISM"),
        "threads": os.environ.get("TWINRUN_THREADS"),
    }
