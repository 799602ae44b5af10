"""Decision Transformer playground: data, model, trainer, evaluation, rendering."""

__version__ = "0.1.0"

import os as _os

# MuJoCo reads MUJOCO_GL once, at its first import: set the headless default
# before anything in the package can import it.
_os.environ.setdefault("MUJOCO_GL", "egl")
