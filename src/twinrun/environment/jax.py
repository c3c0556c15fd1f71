"""JAX's build and devices, for the environment fingerprint (imports JAX, starts its backend)."""

from twinrun.environment.machine import version_or_none


def describe():
    """JAX's version, jaxlib, CUDA plugin and devices, as a JSON-able dict."""
    import jax

    devices = jax.devices()
    gpus = [{"name": device.device_kind} for device in devices if device.platform == "gpu"]
    return {
        "name": "jax",
        "version": jax.__version__,
        "build": {"jaxlib": version_or_none("jaxlib")},
        "devices": [f"{device.platform}:{device.id} {device.device_kind}" for device in devices],
        "gpus": gpus,
        "default_backend": jax.default_backend(),
        "cuda": _cuda_plugin(),
        "cudnn": None,  # jax exposes no cuDNN version; the cuda plugin's package pins it
    }


def _cuda_plugin():
    for name in ("jax-cuda12-plugin", "jax-cuda11-plugin"):
        version = version_or_none(name)
        if version is not None:
            return f"{name} {version}"
    return None
