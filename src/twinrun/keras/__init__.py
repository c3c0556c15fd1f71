"""twinrun for Keras 3 users: `model.fit(..., callbacks=[twinrun.keras.Trace()])`.

Importing this module imports Keras (and so the backend); `import twinrun` alone does not.
"""

from twinrun.keras.callback import Trace

__all__ = ["Trace"]
