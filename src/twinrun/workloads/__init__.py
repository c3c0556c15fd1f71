"""Built-in workloads: the Fashion-MNIST data, the seed CNN and the answer's experiment."""

import importlib


def workload_module(name):
    """The module of a built-in workload (`fashion-cnn` -> `twinrun.workloads.fashion_cnn`): it
    has `load_data(config)`, `train(...)`, `max_epochs(config)` and `max_steps(config)`."""
    return importlib.import_module(f"twinrun.workloads.{name.replace('-', '_')}")
