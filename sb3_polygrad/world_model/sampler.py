"""
PolyGRAD's policy-guided sampler (Rigter, Yamada & Posner 2024, arXiv 2312.08533, Algorithm 1).

Random states and actions are denoised together into an on-policy trajectory from a real start state: the denoiser
moves the states, and a gradient step on ``log pi(a | s)`` at the predicted clean states moves the actions. With no
policy, the same loop is the plain DDPM sampler with given actions.

Shape letters: ``B`` batch, ``H`` horizon, ``D`` transition dim (obs_dim + 2), ``O`` obs dim, ``A`` action dim.
All tensors inside the loop are in normalised units unless named ``raw_*``; the policy sees raw states and acts in its own
action units (SB3's [-1, 1]-scaled actions).
"""

from typing import Literal, Protocol

import torch as th

from sb3_polygrad.world_model.denoisers import Denoiser
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.schedule import DiffusionSchedule, SamplingStep
from sb3_polygrad.world_model.types import ImaginedTrajectory

GuidanceType = Literal["grad", "sample", "none"]
GuidanceStates = Literal["recon", "posterior_mean"]
GUIDANCE_TYPES: tuple[str, ...] = ("grad", "sample", "none")
GUIDANCE_STATES: tuple[str, ...] = ("recon", "posterior_mean")


class GuidancePolicy(Protocol):
    """What the sampler needs of a policy: a diagonal Gaussian over actions, differentiable in the states."""

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:param observations: raw states, shape (..., O)
        :return: mean and standard deviation of the actions, each shape (..., A)"""
        ...


def inpaint(x: th.Tensor, obs0: th.Tensor) -> th.Tensor:
    """Overwrite the first state of every window with the (normalised) start state, in place (section 1.1).

    :param x: windows, shape (B, H, D)
    :param obs0: start states, shape (B, O)
    :return: ``x``"""
    x[:, 0, : obs0.shape[-1]] = obs0
    return x


def gaussian_log_prob_grad(actions: th.Tensor, mean: th.Tensor, std: th.Tensor) -> th.Tensor:
    """Gradient of ``log N(actions; mean, std^2)`` with respect to the actions, ``(mean - actions) / std^2``.

    Closed form for the diagonal Gaussian policy: it needs no backward pass through the policy, and a test checks it
    against autograd. Shapes (..., A)."""
    return (mean - actions) / std.square()


def standardized_action_std(policy: GuidancePolicy, trajectory: ImaginedTrajectory) -> float:
    """
    How on-policy imagined actions are: the std of ``z = (a - mu(s)) / sigma(s)`` over batch and time (steps 0..H-2,
    those the actor-critic learns from), averaged over action dimensions. It is 1 for actions sampled from the policy.

    :param policy: the policy that guided the sampler
    :param trajectory: imagined trajectories
    :return: the standardised action std (section 1.5)
    """
    with th.no_grad():
        mean, std = policy.action_distribution_params(trajectory.observations[:, :-1])
        z = (trajectory.actions[:, :-1] - mean) / std  # (B, H-1, A)
        return z.flatten(0, 1).std(dim=0).mean().item()


class PolicyGuidedSampler:
    """
    The guided denoising loop of section 1.4, with the reference's stabilisers and ablation switches.

    :param schedule: noise schedule (its ``sampling_timesteps`` set the number of steps)
    :param predict_epsilon: the denoiser predicts the noise instead of the clean sample
    :param guidance_type: ``"grad"`` (PolyGRAD: gradient step on log pi), ``"sample"`` (replace actions by policy samples
        at the predicted states), ``"none"`` (actions stay the initial noise)
    :param action_clip_std: clamp actions to ``mu +- action_clip_std * sigma`` of the policy before each guidance step and
        at the end (``None``: no clamp, the paper's ablation)
    :param state_change_clip: in the last steps, limit ``|x_prev - x_t|`` to this (normalised units; ``None``: off)
    :param state_change_clip_steps: the clip applies while the training step index ``t < state_change_clip_steps``;
        ``None`` scales the reference's ``t <= 10`` of N = 128 to the schedule's N (``round(11 N / 128)``), so the clip
        covers the same low-noise end of the process whatever N is
    :param states_for_guidance: condition the policy on the predicted clean states (``"recon"``) or on the posterior mean
    :param update_states: also take a gradient step on the predicted states toward higher ``log pi`` (ablation)
    :param action_guidance_noise_scale: multiplier of the posterior std added to the actions after each guidance step
    """

    def __init__(
        self,
        schedule: DiffusionSchedule,
        predict_epsilon: bool = False,
        guidance_type: GuidanceType = "grad",
        action_clip_std: float | None = 3.0,
        state_change_clip: float | None = 0.25,
        state_change_clip_steps: int | None = None,
        states_for_guidance: GuidanceStates = "recon",
        update_states: bool = False,
        action_guidance_noise_scale: float = 1.0,
    ) -> None:
        if guidance_type not in GUIDANCE_TYPES:
            raise ValueError(f"guidance_type must be one of {GUIDANCE_TYPES}, got {guidance_type!r}")
        if states_for_guidance not in GUIDANCE_STATES:
            raise ValueError(f"states_for_guidance must be one of {GUIDANCE_STATES}, got {states_for_guidance!r}")
        if action_clip_std is not None and action_clip_std <= 0:
            raise ValueError(f"action_clip_std must be > 0 or None, got {action_clip_std}")
        if state_change_clip is not None and state_change_clip <= 0:
            raise ValueError(f"state_change_clip must be > 0 or None, got {state_change_clip}")
        self.schedule = schedule
        self.predict_epsilon = predict_epsilon
        self.guidance_type = guidance_type
        self.action_clip_std = action_clip_std
        self.state_change_clip = state_change_clip
        self.state_change_clip_steps = (
            max(1, round(11 * schedule.n_diffusion_steps / 128))
            if state_change_clip_steps is None
            else state_change_clip_steps
        )
        self.states_for_guidance = states_for_guidance
        self.update_states = update_states
        self.action_guidance_noise_scale = action_guidance_noise_scale

    def predict_x0(self, denoiser: Denoiser, x_t: th.Tensor, actions: th.Tensor, t: th.Tensor) -> th.Tensor:
        """The denoiser's clean-sample prediction, converting predicted noise where needed. Shapes (B, H, D)."""
        out = denoiser(x_t, actions, t)
        return self.schedule.predict_x0_from_eps(x_t, t, out) if self.predict_epsilon else out

    def _clamp(self, raw_actions: th.Tensor, mean: th.Tensor, std: th.Tensor) -> th.Tensor:
        if self.action_clip_std is None:
            return raw_actions
        width = self.action_clip_std * std
        return th.maximum(th.minimum(raw_actions, mean + width), mean - width)

    @th.no_grad()
    def sample(
        self,
        denoiser: Denoiser,
        normalizer: TransitionNormalizer,
        obs0: th.Tensor,
        horizon: int,
        policy: GuidancePolicy | None = None,
        actions: th.Tensor | None = None,
        guidance_scale: float = 0.0,
        generator: th.Generator | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        Run the denoising loop.

        :param denoiser: network predicting clean windows (the EMA copy in PolyGRAD)
        :param normalizer: statistics of the world model
        :param obs0: normalised start states, shape (B, O)
        :param horizon: H
        :param policy: guiding policy; ``None`` keeps the given actions fixed (plain DDPM sampling with given actions)
        :param actions: normalised initial actions, shape (B, H, A); ``None`` draws them from N(0, I)
        :param guidance_scale: g, step size of the guidance gradient in raw action units
        :param generator: random generator for reproducible samples
        :return: normalised windows (B, H, D) and normalised actions (B, H, A)
        """
        batch, obs_dim = obs0.shape
        shape = (batch, horizon, denoiser.transition_dim)
        x = inpaint(th.randn(shape, device=obs0.device, generator=generator), obs0)
        if actions is None:
            actions = th.randn((batch, horizon, denoiser.action_dim), device=obs0.device, generator=generator)
        steps = self.schedule.sampling_steps
        t_all = self.schedule.sampling_timesteps.view(-1, 1).expand(-1, batch)  # (K, B), one row per sampling step
        for k, step in enumerate(steps):
            final = k == len(steps) - 1
            # 1. Predict the clean window; the network sees the actions scaled as in training (no action noise).
            x0_hat = inpaint(self.predict_x0(denoiser, x, step.sqrt_alpha_bar * actions, t_all[k]), obs0)
            # 2. DDPM posterior mean of the next, less noisy window.
            mean = self._posterior_mean(x0_hat, x, step)
            if policy is not None:
                guide_states = x0_hat if self.states_for_guidance == "recon" else mean
                raw_obs = normalizer.observations.unnormalize(guide_states[..., :obs_dim])
                if self.update_states and not final:
                    # Ablation (section 1.4, step 7): move the predicted states toward higher log pi as well.
                    x0_hat = self._guide_states(x0_hat, raw_obs, actions, normalizer, policy, guidance_scale, obs0)
                    mean = self._posterior_mean(x0_hat, x, step)
                    raw_obs = normalizer.observations.unnormalize(x0_hat[..., :obs_dim])
                actions = self._guide_actions(actions, raw_obs, normalizer, policy, guidance_scale, step, final, generator)
            if final:
                # 6. Final step: no noise (at t = 0 the mean is x0_hat up to the state clip).
                return mean, actions
            noise = th.randn(shape, device=x.device, generator=generator)
            x = inpaint(mean + step.std * noise, obs0)
        raise AssertionError("unreachable: the loop returns at its last step")

    def _posterior_mean(self, x0_hat: th.Tensor, x_t: th.Tensor, step: SamplingStep) -> th.Tensor:
        mean = self.schedule.q_posterior_mean(x0_hat, x_t, step)
        if self.state_change_clip is not None and step.t < self.state_change_clip_steps:
            # 3. Late-step state clip: the last few steps may only nudge the window (reference clip_state_change).
            mean = x_t + (mean - x_t).clamp(-self.state_change_clip, self.state_change_clip)
        return mean

    def _guide_actions(
        self,
        actions: th.Tensor,
        raw_obs: th.Tensor,
        normalizer: TransitionNormalizer,
        policy: GuidancePolicy,
        guidance_scale: float,
        step: SamplingStep,
        final: bool,
        generator: th.Generator | None,
    ) -> th.Tensor:
        # 4. The policy at the guidance states, once for the whole batch.
        if self.guidance_type == "none" and not final:
            return actions  # ablation: the actions stay the initial noise, clamped once at the end
        mean, std = policy.action_distribution_params(raw_obs)  # (B, H, A) each
        raw_actions = self._clamp(normalizer.actions.unnormalize(actions), mean, std)
        if final:
            # 5. Final step: clamp only.
            return normalizer.actions.normalize(raw_actions) if self.action_clip_std is not None else actions
        if self.guidance_type == "sample":
            noise = th.randn(raw_actions.shape, device=raw_actions.device, generator=generator)
            return normalizer.actions.normalize(mean + std * noise)
        # 6. Gradient step on log pi in raw action units, then back to normalised units with the posterior's noise.
        # The step g * (mu - a) / sigma^2 moves a fraction g / sigma^2 of the way to the policy mean. Past 1 it overshoots
        # the mean, and past 2 the actions' spread grows with g: the guidance tuner reads that as too little guidance
        # and raises g further, a runaway the reference is open to as the policy std shrinks. Capping the step at the
        # mean (g <= sigma^2) removes it and changes nothing while g < sigma^2.
        step_size = th.minimum(std.square(), th.full_like(std, guidance_scale))
        raw_actions = raw_actions + step_size * gaussian_log_prob_grad(raw_actions, mean, std)
        noise = th.randn(raw_actions.shape, device=raw_actions.device, generator=generator)
        noise_std = self.action_guidance_noise_scale * step.std
        return normalizer.actions.normalize(raw_actions) + noise_std * noise

    def _guide_states(
        self,
        x0_hat: th.Tensor,
        raw_obs: th.Tensor,
        actions: th.Tensor,
        normalizer: TransitionNormalizer,
        policy: GuidancePolicy,
        guidance_scale: float,
        obs0: th.Tensor,
    ) -> th.Tensor:
        raw_actions = normalizer.actions.unnormalize(actions)
        with th.enable_grad():
            states = raw_obs.detach().requires_grad_(True)
            mean, std = policy.action_distribution_params(states)
            log_prob = th.distributions.Normal(mean, std).log_prob(self._clamp(raw_actions, mean, std)).sum()
            (grad,) = th.autograd.grad(log_prob, states)
        new_states = normalizer.observations.normalize(raw_obs + guidance_scale * grad)
        return inpaint(th.cat([new_states, x0_hat[..., raw_obs.shape[-1] :]], dim=-1), obs0)
