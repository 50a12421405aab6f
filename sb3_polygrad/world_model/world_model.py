"""The diffusion world model: normaliser + denoiser + schedule + EMA, with two verbs, ``loss`` and ``imagine``.

Shape letters: ``B`` batch, ``H`` horizon, ``D`` transition dim (obs_dim + 2), ``O`` obs dim, ``A`` action dim.
"""

import copy
from typing import Any, Literal

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_polygrad.world_model.causal_mlp import CausalResidualMLPDenoiser
from sb3_polygrad.world_model.closed_loop_sampler import ClosedLoopSampler
from sb3_polygrad.world_model.denoisers import Denoiser, ResidualMLPDenoiser, TransformerDenoiser
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import GuidancePolicy, PolicyGuidedSampler, inpaint
from sb3_polygrad.world_model.schedule import DiffusionSchedule
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

DenoiserName = Literal["mlp", "causal_mlp", "transformer"]
DENOISERS: dict[str, type[Denoiser]] = {
    "mlp": ResidualMLPDenoiser,
    "causal_mlp": CausalResidualMLPDenoiser,
    "transformer": TransformerDenoiser,
}


def check_finite(name: str, tensor: th.Tensor) -> None:
    """Raise a ``ValueError`` naming ``name`` if ``tensor`` holds a NaN or an infinity."""
    if not th.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")


class DiffusionWorldModel(nn.Module):
    """
    Gaussian diffusion over H-step windows ``x_k = [s_k, r_k, d_k]`` with actions as a separate input (section 1.1).

    The start state is inpainted after every noising and denoising operation; imagination uses an EMA copy of the
    denoiser and the policy-guided sampler.

    :param obs_dim: O
    :param action_dim: A
    :param horizon: H, the window length (paper: 10)
    :param denoiser: ``"mlp"`` (residual MLP, the paper's default), ``"causal_mlp"`` (the same, masked so that outputs see
        only the past) or ``"transformer"``
    :param denoiser_kwargs: keyword arguments of the denoiser class (``hidden_dim``, ``num_layers``, ``d_model``, ...)
    :param n_diffusion_steps: N (paper: 128)
    :param noise_schedule_tau: temperature of the cosine schedule (paper: 1.0; 0.1 for Hopper)
    :param n_sampling_steps: steps the sampler takes, strided over N (``None``: all N)
    :param predict_epsilon: train the denoiser to predict the noise instead of the clean window (paper: ``False``)
    :param per_row_noise: train with an independent noise level for each row of the window (Diffusion Forcing, Chen et
        al. 2024, arXiv 2407.01392) instead of one level for the whole window (the paper's), so that the denoiser can
        also be sampled with rows at different noise levels, as closed-loop imagination does; needs ``causal_mlp``
        (this package's extension, not in the paper)
    :param action_condition_noise_scale: noise added to the denoiser's action input in training (paper: 0)
    :param ema_decay: decay of the denoiser EMA used for imagination (paper: 0.99)
    :param ema_update_every: optimiser steps between EMA updates (paper: 10)
    :param ema_start: optimiser steps during which the EMA is a plain copy (paper: 2000)
    :param sampler_kwargs: keyword arguments of ``PolicyGuidedSampler`` (guidance type, clamps, ablations)
    """

    n_updates: th.Tensor  # optimiser steps of the denoiser, saved with the model so the EMA cadence survives a reload

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        horizon: int = 10,
        denoiser: DenoiserName = "mlp",
        denoiser_kwargs: dict[str, Any] | None = None,
        n_diffusion_steps: int = 128,
        noise_schedule_tau: float = 1.0,
        n_sampling_steps: int | None = None,
        predict_epsilon: bool = False,
        per_row_noise: bool = False,
        action_condition_noise_scale: float = 0.0,
        ema_decay: float = 0.99,
        ema_update_every: int = 10,
        ema_start: int = 2000,
        sampler_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if denoiser not in DENOISERS:
            raise ValueError(f"denoiser must be one of {tuple(DENOISERS)}, got {denoiser!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if per_row_noise and not DENOISERS[denoiser].supports_per_row_noise:
            raise ValueError(f"per_row_noise needs a denoiser that takes a noise level per row (causal_mlp), got {denoiser!r}")
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.horizon = horizon
        self.predict_epsilon = predict_epsilon
        self.per_row_noise = per_row_noise
        self.action_condition_noise_scale = action_condition_noise_scale
        self.ema_decay = ema_decay
        self.ema_update_every = ema_update_every
        self.ema_start = ema_start

        self.normalizer = TransitionNormalizer(obs_dim, action_dim)
        self.denoiser: Denoiser = DENOISERS[denoiser](obs_dim + 2, action_dim, horizon, **(denoiser_kwargs or {}))
        self.ema_denoiser: Denoiser = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.schedule = DiffusionSchedule(n_diffusion_steps, noise_schedule_tau, n_sampling_steps)
        self.sampler = PolicyGuidedSampler(self.schedule, predict_epsilon, **(sampler_kwargs or {}))
        self.register_buffer("n_updates", th.zeros((), dtype=th.long))

    def extra_repr(self) -> str:
        n_params = sum(p.numel() for p in self.denoiser.parameters())
        return f"horizon={self.horizon}, denoiser_parameters={n_params / 1e6:.2f}M, ema_decay={self.ema_decay}"

    def _check_window(self, batch: WindowSamples) -> None:
        bsz, horizon = batch.observations.shape[:2]
        if self.denoiser.fixed_horizon and horizon != self.horizon:
            raise ValueError(f"windows have horizon {horizon}, the world model takes {self.horizon}")
        if horizon > self.horizon:
            raise ValueError(f"windows have horizon {horizon}, longer than the world model's {self.horizon}")
        expected = {
            "observations": (bsz, horizon, self.obs_dim),
            "actions": (bsz, horizon, self.action_dim),
            "rewards": (bsz, horizon),
            "terminals": (bsz, horizon),
        }
        for name, shape in expected.items():
            tensor = getattr(batch, name)
            if tuple(tensor.shape) != shape:
                raise ValueError(f"batch.{name} has shape {tuple(tensor.shape)}, expected {shape}")
            check_finite(f"batch.{name}", tensor)

    def loss(self, batch: WindowSamples) -> tuple[th.Tensor, dict[str, float]]:
        """
        Denoising loss on a batch of real windows: plain MSE on ``x0`` (or the noise), uniform over B x H x D (section 1.2).

        :param batch: real windows in raw units
        :return: the loss and a dict of scalars to log
        """
        self._check_window(batch)
        x0 = self.normalizer.pack(batch.observations, batch.rewards, batch.terminals)  # (B, H, D)
        obs0 = x0[:, 0, : self.obs_dim]
        actions = self.normalizer.actions.normalize(batch.actions)  # (B, H, A)
        t_shape = x0.shape[:2] if self.per_row_noise else x0.shape[:1]  # (B, H) or (B,)
        t = th.randint(0, self.schedule.n_diffusion_steps, t_shape, device=x0.device)
        noise = th.randn_like(x0)
        x_t = inpaint(self.schedule.q_sample(x0, t, noise), obs0)
        # The network sees the clean actions scaled by sqrt(alpha_bar_t), as in sampling (plus optional noise).
        action_noise = self.action_condition_noise_scale * th.randn_like(actions)
        actions_in = self.schedule.q_sample(actions, t, action_noise)
        out = self.denoiser(x_t, actions_in, t)
        # The inpainted slot is overwritten by its target, so it adds nothing to the loss (section 1.2).
        target = noise if self.predict_epsilon else x0
        loss = F.mse_loss(inpaint(out, target[:, 0, : self.obs_dim]), target)
        return loss, {"world_model_loss": loss.item()}

    @th.no_grad()
    def step_ema(self) -> None:
        """Count one optimiser step of the denoiser and update its EMA copy on the reference's cadence."""
        self.n_updates += 1
        n = int(self.n_updates)
        if n % self.ema_update_every != 0:
            return
        if n < self.ema_start:
            self.ema_denoiser.load_state_dict(self.denoiser.state_dict())
        else:
            ema: list[th.Tensor] = list(self.ema_denoiser.parameters())
            online: list[th.Tensor] = list(self.denoiser.parameters())
            th._foreach_lerp_(ema, online, 1.0 - self.ema_decay)

    def set_n_sampling_steps(self, n_sampling_steps: int | None) -> None:
        """
        Sample with another number of denoising steps, strided over the same N training steps (the denoiser is
        unchanged: strided sampling needs no retraining). ``benchmarks/strided_sampling.py`` measures its effect.

        :param n_sampling_steps: steps of the sampler (``None``: all N)
        """
        schedule = DiffusionSchedule(self.schedule.n_diffusion_steps, self.schedule.tau, n_sampling_steps)
        self.schedule = schedule.to(self.schedule.alphas_cumprod.device)
        self.sampler.schedule = self.schedule

    def _check_obs0(self, obs0: th.Tensor) -> None:
        if obs0.dim() != 2 or obs0.shape[1] != self.obs_dim:
            raise ValueError(f"start states must have shape (batch, {self.obs_dim}), got {tuple(obs0.shape)}")
        check_finite("start states", obs0)

    def _to_trajectory(self, obs0: th.Tensor, x: th.Tensor, actions: th.Tensor) -> ImaginedTrajectory:
        observations, rewards, terminals = self.normalizer.unpack(x)
        observations[:, 0] = obs0  # exact start state, free of normalisation round-off
        return ImaginedTrajectory(
            observations=observations,
            actions=self.normalizer.actions.unnormalize(actions),
            rewards=rewards,
            dones=(terminals > 0.5).float(),
        )

    def imagine(
        self,
        obs0: th.Tensor,
        policy: GuidancePolicy,
        guidance_scale: float,
        generator: th.Generator | None = None,
    ) -> ImaginedTrajectory:
        """
        PolyGRAD imagination: on-policy trajectories from real start states (section 1.4).

        :param obs0: raw start states, shape (B, O)
        :param policy: the policy whose actions are diffused
        :param guidance_scale: g, the guidance step size in raw action units
        :param generator: random generator for reproducible samples
        :return: imagined trajectories of length H, in raw units
        """
        self._check_obs0(obs0)
        obs0_n = self.normalizer.observations.normalize(obs0)
        x, actions = self.sampler.sample(
            self.ema_denoiser, self.normalizer, obs0_n, self.horizon, policy=policy, guidance_scale=guidance_scale,
            generator=generator,
        )  # fmt: skip
        return self._to_trajectory(obs0, x, actions)

    def imagine_closed_loop(
        self, obs0: th.Tensor, policy: GuidancePolicy, row_lag: float = 1.0, generator: th.Generator | None = None
    ) -> ImaginedTrajectory:
        """
        Closed-loop imagination (this package's extension, ``world_model/closed_loop_sampler.py``): one staggered
        diffusion pass in which every action is the policy's own sample at the state it is taken in, and every state
        follows from the actions before it. Needs ``causal_mlp`` trained with ``per_row_noise=True``.

        :param obs0: raw start states, shape (B, O)
        :param policy: the policy whose actions are sampled
        :param row_lag: iterations by which each row's denoising lags the row before it
        :param generator: random generator for reproducible samples
        :return: imagined trajectories of length H, in raw units
        """
        if not self.per_row_noise:
            raise ValueError("closed-loop imagination needs a world model trained with per_row_noise=True")
        self._check_obs0(obs0)
        sampler = ClosedLoopSampler(
            self.predict_epsilon, row_lag, self.sampler.state_change_clip, self.sampler.state_change_clip_steps
        )
        obs0_n = self.normalizer.observations.normalize(obs0)
        x, actions = sampler.sample(self.schedule, self.ema_denoiser, self.normalizer, obs0_n, self.horizon, policy, generator)
        return self._to_trajectory(obs0, x, actions)

    def imagine_sequential(
        self, obs0: th.Tensor, policy: GuidancePolicy, generator: th.Generator | None = None
    ) -> ImaginedTrajectory:
        """
        On-policy trajectories sampled one step after another from a causal denoiser (``causal_mlp``): the closed-loop
        rollout that PolyGRAD's joint, guided denoising stands in for. Not in the paper; a diagnostic of the world model
        apart from the guided sampler (``PolyGRAD(imagination="sequential")``).

        A fixed-point iteration over whole windows: each pass draws every action from the policy at the current states,
        ``a_k = mu(s_k) + sigma * z_k`` with ``z`` fixed, then re-samples the windows given those actions (the plain DDPM
        sampler, with the same noise at every pass). The state of row k depends only on actions before k, so pass j
        leaves the states of rows ``<= j`` at their final values, and after H - 1 passes the states follow from the
        actions and actions 0..H-2 are policy samples at the states they are taken in. It costs H - 1 sampling runs
        where guided imagination costs one. (The last row's action is drawn at the previous pass's last state; the
        actor-critic uses it only to bootstrap.)

        :param obs0: raw start states, shape (B, O)
        :param policy: the policy whose actions are sampled
        :param generator: random generator for reproducible samples
        :return: imagined trajectories of length H, in raw units
        """
        if not self.denoiser.causal_states:
            raise ValueError("sequential imagination needs a denoiser whose states see only past actions: causal_mlp")
        self._check_obs0(obs0)
        batch, device = obs0.shape[0], obs0.device
        z = th.randn((batch, self.horizon, self.action_dim), device=device, generator=generator)
        seed = int(th.randint(2**62, (), device=device, generator=generator))
        observations = obs0[:, None].expand(batch, self.horizon, self.obs_dim)
        trajectory: ImaginedTrajectory | None = None
        for _ in range(self.horizon - 1):
            with th.no_grad():
                mean, std = policy.action_distribution_params(observations)
            pass_generator = th.Generator(device=device).manual_seed(seed)  # the same noise at every pass
            trajectory = self.sample_with_actions(obs0, mean + std * z, generator=pass_generator)
            observations = trajectory.observations
        assert trajectory is not None  # horizon >= 2
        return trajectory

    def sample_with_actions(
        self, obs0: th.Tensor, actions: th.Tensor, generator: th.Generator | None = None
    ) -> ImaginedTrajectory:
        """
        Unguided sampling of the states, rewards and terminals that follow given actions (plain DDPM sampler).

        :param obs0: raw start states, shape (B, O)
        :param actions: raw actions, shape (B, H', A) with H' <= H (H' = H for the MLP denoiser)
        :param generator: random generator for reproducible samples
        :return: trajectories of length H'
        """
        self._check_obs0(obs0)
        check_finite("actions", actions)
        horizon = actions.shape[1]
        if actions.shape != (obs0.shape[0], horizon, self.action_dim) or horizon > self.horizon:
            raise ValueError(f"actions must have shape ({obs0.shape[0]}, <= {self.horizon}, {self.action_dim})")
        if self.denoiser.fixed_horizon and horizon != self.horizon:
            raise ValueError(f"this denoiser takes exactly horizon {self.horizon}, got actions of length {horizon}")
        obs0_n = self.normalizer.observations.normalize(obs0)
        actions_n = self.normalizer.actions.normalize(actions)
        x, _ = self.sampler.sample(self.ema_denoiser, self.normalizer, obs0_n, horizon, actions=actions_n, generator=generator)
        return self._to_trajectory(obs0, x, actions_n)
