"""twinrun for plain PyTorch: `tracer = twinrun.torch.Tracer(model, optimizer)`.

Importing this module imports torch; `import twinrun` alone does not.
"""

from twinrun.torch.tracer import Tracer

__all__ = ["Tracer"]
