from sb3_polygrad.polygrad.policies import MlpPolicy, PolyGRADPolicy
from sb3_polygrad.polygrad.polygrad import PolyGRAD

__all__ = ["MlpPolicy", "PolyGRAD", "PolyGRADPolicy"]
