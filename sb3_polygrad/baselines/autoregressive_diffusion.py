"""Autoregressive diffusion: a horizon-2 diffusion model sampled once per imagined step (section 1.6)."""

from typing import Any

import torch as th

from sb3_polygrad.baselines.base import ComparisonWorldModel, one_step_rollout
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import GuidancePolicy
from sb3_polygrad.world_model.training import world_model_update
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples
from sb3_polygrad.world_model.world_model import DiffusionWorldModel


class AutoregressiveDiffusion(ComparisonWorldModel):
    """
    The paper's autoregressive-diffusion baseline: the same diffusion model as PolyGRAD over 2-row windows
    ``[s_k, r_k, d_k], [s_{k+1}, .]`` with the start state inpainted. Imagination samples ``a_k ~ pi(s_k)``, runs the
    plain DDPM sampler with that action (N denoiser calls), reads ``r_k, d_k`` from row 0 and ``s_{k+1}`` from row 1, and
    repeats, so an H-row trajectory costs H full samplings.

    The second row's action is a placeholder (the reference passes normalised 0 when sampling). The reference trains on
    the real ``a_{k+1}`` there, which the denoiser can read ``s_{k+1}`` from, since the data's policy chose it at
    ``s_{k+1}``; here training also sees the placeholder (the data's mean action), so the model is a true one-step
    model and training matches sampling. As in the reference, sampling uses no late-step state clip.

    :param obs_dim: O
    :param action_dim: A
    :param learning_rate: Adam rate of the denoiser (paper: 3e-4)
    :param world_model_kwargs: further ``DiffusionWorldModel`` arguments (``denoiser``, ``denoiser_kwargs``,
        ``n_diffusion_steps``, ``noise_schedule_tau``, EMA)
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        learning_rate: float = 3e-4,
        world_model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(obs_dim, action_dim, train_horizon=2)
        kwargs: dict[str, Any] = {"sampler_kwargs": {"state_change_clip": None}, **(world_model_kwargs or {})}
        self.world_model = DiffusionWorldModel(obs_dim, action_dim, horizon=2, **kwargs)
        self.optimizer = th.optim.Adam(self.world_model.denoiser.parameters(), lr=learning_rate)

    @property
    def normalizer(self) -> TransitionNormalizer:
        return self.world_model.normalizer

    def _placeholder_action(self, batch_size: int, device: th.device) -> th.Tensor:
        """The data's mean action (normalised 0), shape (B, A)."""
        mean = self.normalizer.actions.unnormalize(th.zeros(self.action_dim, device=device))
        return mean.expand(batch_size, -1)

    def train_step(self, batch: WindowSamples) -> dict[str, float]:
        actions = batch.actions.clone()
        actions[:, 1] = self._placeholder_action(actions.shape[0], actions.device)
        return {"world_model_loss": world_model_update(self.world_model, self.optimizer, batch._replace(actions=actions))}

    def _step(self, states: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        action = actions[:, -1]
        window_actions = th.stack([action, self._placeholder_action(action.shape[0], action.device)], dim=1)  # (B, 2, A)
        window = self.world_model.sample_with_actions(states[:, -1], window_actions)
        return window.observations[:, 1], window.rewards[:, 0], window.dones[:, 0]

    def imagine(self, start_states: th.Tensor, policy: GuidancePolicy, horizon: int) -> ImaginedTrajectory:
        return one_step_rollout(start_states, policy, horizon, self._step)
