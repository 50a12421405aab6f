"""
Where PolyGRAD's actor-critic gets its trajectories: interchangeable imagination methods behind one small interface
(``interface.py``), picked by ``PolyGRAD(imagination=...)`` as a name of ``IMAGINATIONS`` or an ``Imagination`` subclass,
with their options in ``imagination_kwargs``.

- ``"guided"``: the paper's policy-guided sampler, with its guidance-scale tuner (``guided.py``).
- ``"closed_loop"``: this package's extension, one staggered diffusion pass whose actions are the policy's own samples
  (``closed_loop.py``).
- ``"sequential"``: a diagnostic, the causal world model sampled one step after another (``sequential.py``).
- ``"simulator"``: a diagnostic, the policy's rollouts in the simulator itself, a perfect world model
  (``in_simulator.py``).

Any of them can end its trajectories by the task's termination rule (``terminations.py``).
"""

from sb3_polygrad.imagination.closed_loop import ClosedLoopImagination, ClosedLoopOptions
from sb3_polygrad.imagination.guided import GuidedImagination, GuidedOptions
from sb3_polygrad.imagination.in_simulator import SimulatorImagination, SimulatorOptions
from sb3_polygrad.imagination.interface import (
    Imagination,
    NoOptions,
    StateClipOptions,
    WorldModelImagination,
    WorldModelNeeds,
)
from sb3_polygrad.imagination.registry import (
    GENERIC_OPTIONS,
    IMAGINATIONS,
    ImaginationName,
    ImaginationSetup,
    imagination_class,
    imagination_options,
)
from sb3_polygrad.imagination.sequential import SequentialImagination
from sb3_polygrad.imagination.terminations import TERMINATIONS, RuleTerminations, Terminations

__all__ = [
    "GENERIC_OPTIONS",
    "IMAGINATIONS",
    "TERMINATIONS",
    "ClosedLoopImagination",
    "ClosedLoopOptions",
    "GuidedImagination",
    "GuidedOptions",
    "Imagination",
    "ImaginationName",
    "ImaginationSetup",
    "NoOptions",
    "RuleTerminations",
    "SequentialImagination",
    "SimulatorImagination",
    "SimulatorOptions",
    "StateClipOptions",
    "Terminations",
    "WorldModelImagination",
    "WorldModelNeeds",
    "imagination_class",
    "imagination_options",
]
