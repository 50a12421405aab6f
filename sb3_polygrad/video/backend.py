"""Choose a headless OpenGL backend for MuJoCo before anything renders, or fail with the system library to install."""

import functools
import os
import subprocess
import sys

# Tried in this order when MUJOCO_GL is unset: EGL uses a GPU driver where there is one and Mesa's software renderer
# otherwise; OSMesa is software only.
HEADLESS_BACKENDS = ("egl", "osmesa")

# What each backend loads, for the error message (package names are Debian/Ubuntu's).
SYSTEM_LIBRARIES = {
    "egl": "libEGL.so.1 and an EGL driver: apt-get install libegl1 libgl1-mesa-dri (or the NVIDIA driver's EGL)",
    "osmesa": "libOSMesa.so.6: apt-get install libosmesa6",
    "glfw": "libglfw and a display (DISPLAY set): apt-get install libglfw3",
    "glx": "libGL.so.1 and a display (DISPLAY set): apt-get install libgl1 libglx-mesa0",
}

# Renders one frame of an empty scene: enough to load the libraries and create a context.
_PROBE = """
import mujoco
renderer = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8)
renderer.render()
renderer.close()
"""


class RenderingBackendError(RuntimeError):
    """No OpenGL backend can render MuJoCo scenes in this process."""


def _probe(backend: str, timeout: float) -> str | None:
    """Try ``backend`` in a fresh interpreter; return ``None`` if it renders, else the last line of the error."""
    # A fresh process, because a backend that fails to load leaves PyOpenGL bound to its platform for good.
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


@functools.cache
def select_gl_backend(timeout: float = 60.0) -> str:
    """
    Pick the OpenGL backend MuJoCo renders with, once per process, and set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``)
    accordingly. A ``MUJOCO_GL`` set by the user is checked and kept; otherwise EGL, then OSMesa, are tried.

    Call it before the first MuJoCo render of the process: MuJoCo and PyOpenGL bind their platform on first use.

    :param timeout: seconds allowed to each probe (a subprocess that renders one frame)
    :return: the backend's name, e.g. ``"egl"``
    :raises RenderingBackendError: when no backend works; the message names the system library each one needs
    """
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    candidates = (requested,) if requested else HEADLESS_BACKENDS
    failures = {}
    for backend in candidates:
        error = _probe(backend, timeout)
        if error is None:
            os.environ["MUJOCO_GL"] = backend
            if backend in HEADLESS_BACKENDS:
                # mujoco.egl / mujoco.osmesa set this themselves when unset, but only on their own import.
                os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
        failures[backend] = error
    details = "\n".join(
        f"  MUJOCO_GL={backend}: {error}\n    needs {SYSTEM_LIBRARIES.get(backend, 'a backend MuJoCo supports')}"
        for backend, error in failures.items()
    )
    raise RenderingBackendError(
        "MuJoCo cannot render offscreen here; install the system library of a headless backend "
        f"(or set MUJOCO_GL to one that works):\n{details}"
    )
