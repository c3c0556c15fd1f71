"""TensorFlow's build and devices, for the environment fingerprint (imports TensorFlow)."""


def describe():
    """TensorFlow's version, build settings (CUDA, cuDNN) and devices, as a JSON-able dict."""
    import tensorflow as tf

    build = {
        key: value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        for key, value in tf.sysconfig.get_build_info().items()
    }
    devices = tf.config.list_physical_devices()
    gpus = []
    for device in devices:
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
            gpus.append({"name": details.get("device_name", device.name)})
    return {
        "name": "tensorflow",
        "version": tf.__version__,
        "build": build,
        "devices": [f"{device.device_type}:{device.name}" for device in devices],
        "gpus": gpus,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
    }
