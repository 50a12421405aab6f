"""
Closed-loop imagination: one diffusion pass whose actions are the policy's own samples at the states it imagines.

This package's extension of PolyGRAD, not in the paper. PolyGRAD's guided sampler moves the actions toward the policy
by a gradient step per denoising step; with few steps the actions stay weaker than the policy's, and a denoiser that
sees the whole window reads the states off those actions, so the imagined trajectory obeys neither the policy nor the
dynamics. Here, with a causal denoiser (the state of row k sees only the actions of rows < k):

- at every denoising step each action is re-drawn from the policy at the current prediction of its state,
  ``a_k = mu(s_k) + sigma(s_k) * eps_k`` with ``eps`` drawn once per trajectory, so the actions are exact policy
  samples at the final states, with no bias and no gradient step (as in Horizon Imagination, Cohen et al. 2026,
  arXiv 2602.08032);
- the rows are denoised on a staggered schedule: row k runs the sampler's K steps ``row_lag * k`` iterations after
  row 0, so each state is still noisy, and still moves, while the actions before it settle. ``row_lag = 0`` denoises
  all rows together; ``row_lag = K`` is one row after another, the autoregressive rollout. A pass costs
  ``K + round(row_lag * (H - 1))`` denoiser calls, against K for the guided sampler.

Rows at different noise levels need a denoiser trained with a noise level per row (``per_row_noise=True``). A row
not yet started waits as pure noise at the noisiest level; a finished row stays as it is, at level 0.

Shape letters: ``B`` batch, ``H`` horizon, ``D`` transition dim, ``O`` obs dim, ``A`` action dim, ``J`` iterations,
``K`` sampling steps.
"""

import torch as th

from sb3_polygrad.world_model.denoisers import Denoiser
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import GuidancePolicy, inpaint
from sb3_polygrad.world_model.schedule import DiffusionSchedule


def staggered_steps(n_sampling_steps: int, horizon: int, row_lag: float) -> th.Tensor:
    """
    The sampling step each row takes at each iteration of a staggered pass.

    :param n_sampling_steps: K, the steps of one row
    :param horizon: H
    :param row_lag: iterations by which each row starts after the row before it (>= 0)
    :return: integer tensor (J, H) with ``J = K + round(row_lag * (H - 1))``: the step index in ``0..K-1``, ``-1`` for a
        row that has not started and ``K`` for a row that has finished
    """
    if row_lag < 0:
        raise ValueError(f"row_lag must be >= 0, got {row_lag}")
    offsets = th.tensor([round(row_lag * k) for k in range(horizon)])
    iterations = n_sampling_steps + int(offsets[-1])
    return (th.arange(iterations)[:, None] - offsets[None]).clamp(-1, n_sampling_steps)


class ClosedLoopSampler:
    """
    The staggered, policy-sampled denoising pass described in the module docstring.

    :param predict_epsilon: the denoiser predicts the noise instead of the clean window
    :param row_lag: iterations by which each row's denoising lags the row before it (see the module docstring)
    :param state_change_clip: in a row's last steps, limit its per-step change to this (normalised units; ``None``: off),
        the guided sampler's late-step clip, so that both samplers share the world model's low-noise behaviour
    :param state_change_clip_steps: the clip applies while the row's diffusion step ``t < state_change_clip_steps``
    """

    def __init__(
        self,
        predict_epsilon: bool = False,
        row_lag: float = 1.0,
        state_change_clip: float | None = 0.25,
        state_change_clip_steps: int = 11,
    ) -> None:
        if row_lag < 0:
            raise ValueError(f"row_lag must be >= 0, got {row_lag}")
        self.predict_epsilon = predict_epsilon
        self.row_lag = row_lag
        self.state_change_clip = state_change_clip
        self.state_change_clip_steps = state_change_clip_steps

    def _tables(self, schedule: DiffusionSchedule, steps: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Per iteration and row of ``steps`` (:func:`staggered_steps`): the diffusion step the denoiser is told (J, H),
        the five sampling coefficients (J, H, 5) (a waiting or finished row holds: posterior mean = current sample, no
        noise) and the clip flag (J, H)."""
        device = schedule.sampling_coefficients.device
        coefficients = schedule.sampling_coefficients  # (K, 5)
        ab0 = schedule.alphas_cumprod[0]
        hold = th.tensor([0.0, 0.0, 0.0, 1.0, 0.0], device=device)
        waiting = th.cat([coefficients[0, :2], hold[2:]])  # the noisiest level's input scales
        finished = th.cat([ab0.sqrt()[None], (1.0 - ab0).sqrt()[None], hold[2:]])
        table = th.cat([waiting[None], coefficients, finished[None]])  # (K + 2, 5), indexed by step + 1
        t_table = th.cat(
            [schedule.sampling_timesteps[:1], schedule.sampling_timesteps, th.zeros(1, dtype=th.long, device=device)]
        )
        index = (steps + 1).to(device)
        active = ((steps >= 0) & (steps < schedule.n_sampling_steps)).to(device)
        return t_table[index], table[index], active & (t_table[index] < self.state_change_clip_steps)

    @th.no_grad()
    def sample(
        self,
        schedule: DiffusionSchedule,
        denoiser: Denoiser,
        normalizer: TransitionNormalizer,
        obs0: th.Tensor,
        horizon: int,
        policy: GuidancePolicy,
        generator: th.Generator | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        One closed-loop pass.

        :param schedule: the noise schedule (its sampling steps are each row's steps)
        :param denoiser: a denoiser with causal states that takes a noise level per row (the EMA copy in PolyGRAD)
        :param normalizer: statistics of the world model
        :param obs0: normalised start states, shape (B, O)
        :param horizon: H
        :param policy: the policy whose actions are sampled
        :param generator: random generator for reproducible samples
        :return: normalised windows (B, H, D) and normalised actions (B, H, A); action k is the policy's sample at the
            final state of row k
        """
        if not (denoiser.causal_states and denoiser.supports_per_row_noise):
            raise ValueError("closed-loop imagination needs a causal denoiser that takes a noise level per row: causal_mlp")
        batch, device = obs0.shape[0], obs0.device
        obs_dim = obs0.shape[-1]
        steps = staggered_steps(schedule.n_sampling_steps, horizon, self.row_lag)
        t_rows, coefficients, clips = self._tables(schedule, steps)
        # The policy acts at each row's best guess of its state: the state itself from the row's last step on.
        done = (steps >= schedule.n_sampling_steps - 1).to(device)  # (J, H)
        refresh = self._rows_to_refresh(steps, schedule.n_sampling_steps)
        read_rows = self._rows_read(steps, schedule.n_sampling_steps, refresh)
        conditionings, shared = denoiser.prepare_sampling(t_rows)  # one row per iteration
        x = inpaint(th.randn((batch, horizon, denoiser.transition_dim), device=device, generator=generator), obs0)
        eps = th.randn((batch, horizon, denoiser.action_dim), device=device, generator=generator)
        raw_states = normalizer.observations.unnormalize(obs0)[:, None].expand(batch, horizon, obs_dim)
        actions = self._policy_actions(policy, normalizer, raw_states, eps)
        for j in range(t_rows.shape[0]):
            sqrt_ab, sqrt_one_minus_ab, coef_x0, coef_xt, std = coefficients[j, :, :, None].unbind(1)  # each (H, 1)
            conditioning = None if conditionings is None else conditionings[j : j + 1]
            out = denoiser.denoise_sampling(x, sqrt_ab * actions, conditioning, shared, read_rows[j])
            x0_hat = inpaint((x - sqrt_one_minus_ab * out) / sqrt_ab if self.predict_epsilon else out, obs0)
            mean = DiffusionSchedule.q_posterior_mean(x0_hat, x, coef_x0, coef_xt)
            if self.state_change_clip is not None:
                clipped = x + (mean - x).clamp(-self.state_change_clip, self.state_change_clip)
                mean = th.where(clips[j, :, None], clipped, mean)
            noise = th.randn(x.shape, device=device, generator=generator)
            x = inpaint(mean + std * noise, obs0)
            lo, hi = refresh[j]
            guess = th.where(done[j, lo:hi, None], x[:, lo:hi], x0_hat[:, lo:hi])
            raw_guess = normalizer.observations.unnormalize(guess[..., :obs_dim])
            actions[:, lo:hi] = self._policy_actions(policy, normalizer, raw_guess, eps[:, lo:hi])
        return x, actions

    @staticmethod
    def _rows_to_refresh(steps: th.Tensor, n_sampling_steps: int) -> list[tuple[int, int]]:
        """
        Per iteration j, the rows ``lo:hi`` whose action must be re-drawn after it: those the next iteration denoises,
        and those that have just finished (their final action). Why not all rows: a waiting row's action only reaches
        outputs of waiting rows, which hold, and a finished row's state no longer moves; the policy calls were a third
        of a pass's cost.
        """
        next_steps = th.cat([steps[1:], steps[-1:].clamp(max=n_sampling_steps)])
        needed = ((next_steps >= 0) & (next_steps < n_sampling_steps)) | (steps == n_sampling_steps - 1)  # (J, H)
        rows = [th.nonzero(row).flatten() for row in needed]
        return [(int(r[0]), int(r[-1]) + 1) if len(r) else (0, 0) for r in rows]

    @staticmethod
    def _rows_read(steps: th.Tensor, n_sampling_steps: int, refresh: list[tuple[int, int]]) -> list[int]:
        """
        Per iteration j, how many of the first rows' predictions are read: the rows it denoises, and those whose action
        is re-drawn after it (:meth:`_rows_to_refresh`), such as the next row to start, drawn at its first guess. The
        waiting rows after them hold, so a causal denoiser computes the first rows only (``denoise_sampling``).
        """
        active = (steps >= 0) & (steps < n_sampling_steps)  # (J, H)
        last_active = th.where(active, th.arange(steps.shape[1]), -1).amax(dim=1)
        return [max(int(last) + 1, hi, 1) for last, (_, hi) in zip(last_active, refresh, strict=True)]

    @staticmethod
    def _policy_actions(
        policy: GuidancePolicy, normalizer: TransitionNormalizer, raw_states: th.Tensor, eps: th.Tensor
    ) -> th.Tensor:
        """Normalised policy samples ``mu(s) + sigma(s) * eps`` at raw states (B, H, O)."""
        mean, std = policy.action_distribution_params(raw_states)
        return normalizer.actions.normalize(mean + std * eps)
