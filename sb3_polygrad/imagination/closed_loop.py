"""
This package's extension: one staggered diffusion pass of a causal world model in which every action is the policy's own
sample at the state it is taken in (``world_model/closed_loop_sampler.py``, ``docs/closed_loop_imagination.md``).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch as th

from sb3_polygrad.imagination.interface import StateClipOptions, WorldModelImagination, WorldModelNeeds
from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory
from sb3_polygrad.world_model.world_model import DiffusionWorldModel

if TYPE_CHECKING:
    from sb3_polygrad.polygrad.polygrad import PolyGRAD


@dataclass(frozen=True)
class ClosedLoopOptions(StateClipOptions):
    """
    The options of closed-loop imagination, ``PolyGRAD(imagination="closed_loop", imagination_kwargs=...)``.

    :param state_change_clip: limit of the per-step change of each row in its last denoising steps (``None``: off)
    :param state_change_clip_steps: the clip applies while the row's diffusion step ``t < state_change_clip_steps``
        (``None``: the reference's ``t <= 10`` at N = 128, scaled to N)
    :param row_lag: the denoising iterations by which each imagined step lags the step before it (0: all steps
        denoised together; the number of sampling steps: one after another). Imagination costs
        ``round(row_lag * (H - 1))`` more denoiser calls than guided sampling
    """

    row_lag: float = 1.0


class ClosedLoopImagination(WorldModelImagination):
    """
    This package's extension: one staggered pass of the causal world model in which every action is the policy's own
    sample at the state it is taken in (``DiffusionWorldModel.imagine_closed_loop``), so the trajectories follow both the
    world model's dynamics and the policy. Needs ``denoiser="causal_mlp"``; its world model trains with
    ``per_row_noise=True``. Options: :class:`ClosedLoopOptions`.

    :param world_model: a ``causal_mlp`` world model trained with ``per_row_noise=True``
    :param policy: the policy whose actions are sampled
    :param row_lag: iterations by which each row's denoising lags the row before it
    """

    options_class = ClosedLoopOptions

    def __init__(self, world_model: DiffusionWorldModel, policy: PolyGRADPolicy, row_lag: float = 1.0) -> None:
        self.world_model = world_model
        self.policy = policy
        self.row_lag = row_lag

    @classmethod
    def world_model_needs(cls, options: ClosedLoopOptions) -> WorldModelNeeds:
        # Rows are denoised at different noise levels: the denoiser must have been trained on such windows.
        kwargs = {"per_row_noise": True, "sampler_kwargs": options.sampler_kwargs()}
        return WorldModelNeeds(causal_denoiser=True, world_model_kwargs=kwargs)

    @classmethod
    def from_algorithm(cls, algo: "PolyGRAD", options: ClosedLoopOptions) -> "ClosedLoopImagination":
        return cls(algo.world_model, algo.policy, options.row_lag)

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self.world_model.imagine_closed_loop(obs0, self.policy, self.row_lag, generator)
