"""PolyGRAD as a world model of the comparison: ``DiffusionWorldModel`` with its optimiser and guidance-scale tuning."""

import math
from typing import Any

import torch as th

from sb3_polygrad.baselines.base import ComparisonWorldModel
from sb3_polygrad.world_model.guidance_tuning import tune_guidance_scale
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import GuidancePolicy, standardized_action_std
from sb3_polygrad.world_model.training import world_model_update
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples
from sb3_polygrad.world_model.world_model import DenoiserName, DiffusionWorldModel

# Adam rates of the reference's world-model-only configs (section 4.4).
DEFAULT_LEARNING_RATES: dict[str, float] = {"mlp": 3e-4, "causal_mlp": 3e-4, "transformer": 1e-4}


class PolyGRADWorldModel(ComparisonWorldModel):
    """
    Policy-guided trajectory diffusion: one denoising run of N steps produces all H rows and the actions together.

    Trained on windows of ``horizon`` rows; ``imagine`` produces trajectories of exactly that length. The guidance scale
    is tuned by PolyGRAD's own tuner (``tune_guidance_scale``: SGD on ``log g`` towards imagined actions of standardised
    std 1, capped where a larger g has no effect) at the rate of the paper's world-model-only runs
    (``guidance_learning_rate`` 3e-2), whenever the experiment calls ``adapt_to_policy``.

    :param obs_dim: O
    :param action_dim: A
    :param horizon: H, rows of the diffused windows
    :param denoiser: ``"mlp"`` (residual MLP), ``"causal_mlp"`` (causally masked residual MLP) or ``"transformer"``
    :param learning_rate: Adam rate of the denoiser (``None``: 3e-4 for the MLP, 1e-4 for the transformer, as the paper)
    :param guidance_scale: initial guidance scale g
    :param guidance_learning_rate: SGD rate on ``log g``
    :param tune_guidance: tune g in ``adapt_to_policy``
    :param world_model_kwargs: further ``DiffusionWorldModel`` arguments (``denoiser_kwargs``, ``n_diffusion_steps``,
        ``noise_schedule_tau``, EMA, ``sampler_kwargs``)
    """

    log_guidance_scale: th.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        horizon: int = 10,
        denoiser: DenoiserName = "mlp",
        learning_rate: float | None = None,
        guidance_scale: float = 0.005,
        guidance_learning_rate: float = 3e-2,
        tune_guidance: bool = True,
        world_model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(obs_dim, action_dim, train_horizon=horizon)
        if guidance_scale <= 0:
            raise ValueError(f"guidance_scale must be > 0, got {guidance_scale}")
        self.world_model = DiffusionWorldModel(obs_dim, action_dim, horizon, denoiser, **(world_model_kwargs or {}))
        lr = DEFAULT_LEARNING_RATES[denoiser] if learning_rate is None else learning_rate
        self.optimizer = th.optim.Adam(self.world_model.denoiser.parameters(), lr=lr)
        self.guidance_learning_rate = guidance_learning_rate
        self.tune_guidance = tune_guidance
        self.register_buffer("log_guidance_scale", th.tensor(math.log(guidance_scale)))

    @property
    def normalizer(self) -> TransitionNormalizer:
        return self.world_model.normalizer

    @property
    def guidance_scale(self) -> float:
        """The current guidance scale g."""
        return self.log_guidance_scale.exp().item()

    def train_step(self, batch: WindowSamples) -> dict[str, float]:
        return {"world_model_loss": world_model_update(self.world_model, self.optimizer, batch)}

    def supports_horizon(self, horizon: int) -> bool:
        return horizon == self.world_model.horizon

    def imagine(self, start_states: th.Tensor, policy: GuidancePolicy, horizon: int) -> ImaginedTrajectory:
        if not self.supports_horizon(horizon):
            raise ValueError(f"this PolyGRAD model imagines trajectories of {self.world_model.horizon} rows, not {horizon}")
        return self.world_model.imagine(start_states, policy, self.guidance_scale)

    def adapt_to_policy(self, start_states: th.Tensor, policy: GuidancePolicy) -> dict[str, float]:
        """
        Imagine from ``start_states`` and take one step of the guidance-scale tuner (``tune_guidance_scale``, section 1.5).

        :param start_states: raw states, shape (B, O)
        :param policy: the guiding policy
        :return: the standardised std of the imagined actions and the new guidance scale
        """
        trajectory = self.imagine(start_states, policy, self.world_model.horizon)
        action_std = standardized_action_std(policy, trajectory)
        if self.tune_guidance:
            with th.no_grad():
                # Over the imagined states: the study's SAC policy has a std that depends on the state.
                max_std = policy.action_distribution_params(trajectory.observations[:, :-1])[1].max().item()
            tune_guidance_scale(self.log_guidance_scale, action_std, max_std, self.guidance_learning_rate)
        return {"imagined_action_std": action_std, "guidance_scale": self.guidance_scale}
