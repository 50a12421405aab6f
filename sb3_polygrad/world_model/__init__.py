"""Everything diffusion: schedule, denoisers, normaliser, guided sampler and the world model that composes them."""

from sb3_polygrad.world_model.causal_mlp import CausalResidualMLPDenoiser
from sb3_polygrad.world_model.denoisers import ResidualMLPDenoiser, TransformerDenoiser
from sb3_polygrad.world_model.normalization import RunningNormalizer, TransitionNormalizer
from sb3_polygrad.world_model.sampler import (
    GuidancePolicy,
    PolicyGuidedSampler,
    standardized_action_stats,
    standardized_action_std,
)
from sb3_polygrad.world_model.schedule import DiffusionSchedule, cosine_tau_betas
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples
from sb3_polygrad.world_model.world_model import DiffusionWorldModel

__all__ = [
    "CausalResidualMLPDenoiser",
    "DiffusionSchedule",
    "DiffusionWorldModel",
    "GuidancePolicy",
    "ImaginedTrajectory",
    "PolicyGuidedSampler",
    "ResidualMLPDenoiser",
    "RunningNormalizer",
    "TransformerDenoiser",
    "TransitionNormalizer",
    "WindowSamples",
    "cosine_tau_betas",
    "standardized_action_stats",
    "standardized_action_std",
]
