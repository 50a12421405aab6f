"""
sb3-polygrad: PolyGRAD (policy-guided trajectory diffusion world models) for Stable-Baselines3.

Docstrings and comments that cite "section X.Y" refer to that section of ``docs/method.md``, which describes the
algorithm as this package implements it.
"""

from pathlib import Path

from sb3_polygrad.polygrad import MlpPolicy, PolyGRAD, PolyGRADPolicy

__version__ = (Path(__file__).parent / "version.txt").read_text().strip()

__all__ = ["MlpPolicy", "PolyGRAD", "PolyGRADPolicy", "__version__"]
