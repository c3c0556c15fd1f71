"""PyTorch's build and devices, for the environment fingerprint (imports torch)."""


def describe():
    """torch's version, build settings, CUDA/cuDNN and devices, as a JSON-able dict."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    gpus = []
    if torch.cuda.is_available():
        gpus = [{"name": torch.cuda.get_device_name(i)} for i in range(torch.cuda.device_count())]
    # The full `torch.__config__.show()` is a page of text; these lines say how it was built.
    build = [
        line.strip() for line in torch.__config__.show().splitlines()
        if line.strip().startswith(("- ", "Build settings", "PyTorch built with"))
    ]
    return {
        "name": "torch",
        "version": torch.__version__,
        "build": build,
        "devices": ["cpu"] + [f"cuda:{i}" for i in range(len(gpus))],
        "gpus": gpus,
        "cuda": torch.version.cuda,
        "cudnn": None if cudnn is None else str(cudnn),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        # The vector level ATen's kernels use here (AVX512, AVX2, DEFAULT): with the CPU it
        # decides the bits, and ATEN_CPU_CAPABILITY (`--portable`) caps it.
        "cpu_capability": _cpu_capability(torch),
    }


def _cpu_capability(torch):
    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return getter() if getter is not None else None
