"""The paper's imagination: the policy-guided sampler (section 1.4) and the tuner of its guidance scale (section 1.5)."""

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch as th

from sb3_polygrad.imagination.interface import StateClipOptions, WorldModelImagination, WorldModelNeeds
from sb3_polygrad.polygrad.device_advice import check_compiler
from sb3_polygrad.polygrad.policies import PolyGRADPolicy
from sb3_polygrad.world_model.guidance_tuning import tune_guidance_scale
from sb3_polygrad.world_model.sampler import GuidanceStates, GuidanceType
from sb3_polygrad.world_model.types import ImaginedTrajectory
from sb3_polygrad.world_model.world_model import DiffusionWorldModel

if TYPE_CHECKING:
    from sb3_polygrad.polygrad.polygrad import PolyGRAD


@dataclass(frozen=True)
class GuidedOptions(StateClipOptions):
    """
    The options of guided imagination, ``PolyGRAD(imagination="guided", imagination_kwargs=...)``; the defaults are the
    paper's.

    :param state_change_clip: limit of the per-step change of the window in the last denoising steps (``None``: off)
    :param state_change_clip_steps: the clip applies while the diffusion step ``t < state_change_clip_steps``
        (``None``: the reference's ``t <= 10`` at N = 128, scaled to N)
    :param guidance_type: ``"grad"`` (PolyGRAD), ``"sample"`` or ``"none"`` (the paper's ablations)
    :param guidance_scale: initial guidance scale g
    :param tune_guidance: adapt g so that imagined actions have standardised std 1 (only with ``"grad"``)
    :param guidance_learning_rate: SGD rate on ``log g``
    :param action_clip_std: clamp imagined actions to ``mu +- action_clip_std * sigma`` (``None``: off, an ablation)
    :param states_for_guidance: condition the policy on ``"recon"`` (predicted clean) or ``"posterior_mean"`` states
    :param update_states: also guide the predicted states toward higher ``log pi`` (the paper's ablation, as the
        reference runs it: with ``guidance_type="grad"`` only, after the actions' step; ``PolicyGuidedSampler``)
    :param action_guidance_noise_scale: scale of the noise added to the actions at each guidance step
    :param compile: run the sampler's denoising loop through ``torch.compile``, as CUDA graphs on a GPU (same samples to
        float rounding; ``benchmarks/imagination_speed.py`` measures the gain; the first imagination pays the
        compilation; on a CPU it needs a C++ compiler)
    """

    guidance_type: GuidanceType = "grad"
    guidance_scale: float = 0.005
    tune_guidance: bool = True
    guidance_learning_rate: float = 3e-3
    action_clip_std: float | None = 3.0
    states_for_guidance: GuidanceStates = "recon"
    update_states: bool = False
    action_guidance_noise_scale: float = 1.0
    compile: bool = False

    def __post_init__(self) -> None:
        if self.tune_guidance and self.guidance_type != "grad":
            warnings.warn(f"tune_guidance only acts with guidance_type='grad'; it is ignored with {self.guidance_type!r}")

    def sampler_kwargs(self) -> dict[str, Any]:
        return {
            **super().sampler_kwargs(),
            "guidance_type": self.guidance_type,
            "action_clip_std": self.action_clip_std,
            "states_for_guidance": self.states_for_guidance,
            "update_states": self.update_states,
            "action_guidance_noise_scale": self.action_guidance_noise_scale,
            "compile": self.compile,
        }


class GuidedImagination(WorldModelImagination):
    """
    The paper's imagination: the policy-guided sampler (section 1.4), and the tuner of its guidance scale g (section
    1.5, ``world_model/guidance_tuning.py``). Options: :class:`GuidedOptions`.

    :param world_model: the diffusion world model
    :param policy: the policy that guides the sampler
    :param log_guidance_scale: ``log g``, a 0-d tensor the method updates in place (saved with the algorithm)
    :param tune: adapt g toward imagined actions of standardised std 1
    :param learning_rate: SGD rate on ``log g``
    """

    options_class = GuidedOptions

    def __init__(
        self,
        world_model: DiffusionWorldModel,
        policy: PolyGRADPolicy,
        log_guidance_scale: th.Tensor,
        tune: bool = True,
        learning_rate: float = 3e-3,
    ) -> None:
        self.world_model = world_model
        self.policy = policy
        self._log_guidance_scale = log_guidance_scale
        self.tune = tune
        self.learning_rate = learning_rate

    @classmethod
    def world_model_needs(cls, options: GuidedOptions) -> WorldModelNeeds:
        return WorldModelNeeds(world_model_kwargs={"sampler_kwargs": options.sampler_kwargs()})

    @classmethod
    def from_algorithm(cls, algo: "PolyGRAD", options: GuidedOptions) -> "GuidedImagination":
        check_compiler(algo.device, options.compile)  # before the first imagination would fail deep inside torch
        return cls(
            algo.world_model,
            algo.policy,
            th.tensor(math.log(options.guidance_scale), device=algo.device),
            options.tune_guidance and options.guidance_type == "grad",
            options.guidance_learning_rate,
        )

    @property
    def log_guidance_scale(self) -> th.Tensor:
        return self._log_guidance_scale

    def imagine_from(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        return self.world_model.imagine(obs0, self.policy, self.log_guidance_scale.exp().item(), generator)

    def adapt(self, action_std: float, action_bias: float) -> dict[str, float]:
        if self.tune:
            tune_guidance_scale(self.log_guidance_scale, action_std, self.policy.actor.std().max().item(), self.learning_rate)
        return {"guidance_scale": self.log_guidance_scale.exp().item()}
