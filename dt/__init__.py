"""Decision Transformer playground: data, model, trainer, evaluation, rendering."""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# The one place that sets the MUJOCO_GL default. MuJoCo reads it once, at its first import, and its default
# (GLFW) needs a screen; EGL is the headless choice on Linux, other systems keep theirs. Set here, before any
# module of the package can import mujoco (gymnasium's envs do, and so does dt.render.scene).
if _sys.platform.startswith("linux"):
    _os.environ.setdefault("MUJOCO_GL", "egl")
