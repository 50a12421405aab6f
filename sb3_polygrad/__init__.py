"""sb3-polygrad: PolyGRAD (policy-guided trajectory diffusion world models) for Stable-Baselines3."""

from pathlib import Path

from sb3_polygrad.polygrad import MlpPolicy, PolyGRAD, PolyGRADPolicy

__version__ = (Path(__file__).parent / "version.txt").read_text().strip()

__all__ = ["MlpPolicy", "PolyGRAD", "PolyGRADPolicy", "__version__"]
