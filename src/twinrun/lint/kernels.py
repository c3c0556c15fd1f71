"""Kernel choices that change between runs: cuDNN's benchmark mode."""

import ast

from twinrun.lint.script import constant

_BENCHMARK = "torch.backends.cudnn.benchmark"


def cudnn_benchmark(script):
    """A finding for `torch.backends.cudnn.benchmark = True`."""
    for node in script.nodes(ast.Assign):
        if constant(node.value) is not True:
            continue
        for target in node.targets:
            if script.name(target) == _BENCHMARK:
                yield script.finding(
                    node, "cudnn-benchmark", "`torch.backends.cudnn.benchmark = True`",
                    "cuDNN then times several convolution algorithms on the first batches and "
                    "keeps the fastest, which depends on timing and on what else runs on the "
                    "GPU, and different algorithms give different bits.",
                    "Set `torch.backends.cudnn.benchmark = False` (and "
                    "`torch.use_deterministic_algorithms(True)`), or call "
                    "`twinrun.deterministic(seed)`, which does both.")
