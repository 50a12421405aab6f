"""
PolyGRAD's policy-guided sampler (Rigter, Yamada & Posner 2024, arXiv 2312.08533, Algorithm 1).

Random states and actions are denoised together into an on-policy trajectory from a real start state: the denoiser
moves the states, and a gradient step on ``log pi(a | s)`` at the predicted clean states moves the actions. With no
policy, the same loop is the plain DDPM sampler with given actions.

Shape letters: ``B`` batch, ``H`` horizon, ``D`` transition dim (obs_dim + 2), ``O`` obs dim, ``A`` action dim.
All tensors inside the loop are in normalised units unless named ``raw_*``; the policy sees raw states and acts in its own
action units (SB3's [-1, 1]-scaled actions).
"""

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, Protocol

import torch as th

from sb3_polygrad.world_model.denoisers import Denoiser
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.schedule import DiffusionSchedule
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


class SamplingRun(NamedTuple):
    """What every step of one sampling run shares: the networks, the statistics, the start states, the guidance scale."""

    denoiser: Denoiser
    denoiser_shared: tuple[th.Tensor, ...]  # the shared tensors of denoiser.prepare_sampling
    normalizer: TransitionNormalizer
    policy: GuidancePolicy | None
    obs0: th.Tensor  # normalised start states, (B, O)
    guidance_scale: th.Tensor  # g, a 0-d tensor so that a compiled loop does not specialise on its value
    start_policy: tuple[th.Tensor, th.Tensor] | None  # the policy's mean and std at the start states, (B, A) each


def gaussian_log_prob_grad(actions: th.Tensor, mean: th.Tensor, std: th.Tensor) -> th.Tensor:
    """Gradient of ``log N(actions; mean, std^2)`` with respect to the actions, ``(mean - actions) / std^2``.

    Closed form for the diagonal Gaussian policy: it needs no backward pass through the policy, and a test checks it
    against autograd. Shapes (..., A)."""
    return (mean - actions) / std.square()


def standardized_action_stats(policy: GuidancePolicy, trajectory: ImaginedTrajectory) -> tuple[float, float]:
    """
    How on-policy imagined actions are, from ``z = (a - mu(s)) / sigma(s)`` over batch and time (steps 0..H-2, those the
    actor-critic learns from):

    - the std of ``z`` (averaged over action dimensions), 1 for actions sampled from the policy: what the guidance tuner
      holds at 1 (section 1.5);
    - the bias, the mean of ``z * sign(mu(s))``, 0 for policy samples; below 0 the imagined actions are weaker than the
      policy's (pulled toward 0, e.g. by the data's actions), above 0 stronger. Actions shrunk toward 0 with a narrower
      spread (where the tuner can settle) keep the std at 1 and the plain mean of ``z`` at 0 wherever the policy's means
      take both signs; the bias shows them.

    :param policy: the policy that guided the sampler
    :param trajectory: imagined trajectories
    :return: the standardised action std and bias
    """
    with th.no_grad():
        mean, std = policy.action_distribution_params(trajectory.observations[:, :-1])
        z = (trajectory.actions[:, :-1] - mean) / std  # (B, H-1, A)
        return z.flatten(0, 1).std(dim=0).mean().item(), (z * mean.sign()).mean().item()


def standardized_action_std(policy: GuidancePolicy, trajectory: ImaginedTrajectory) -> float:
    """The std of :func:`standardized_action_stats`: 1 for actions sampled from the policy.

    :param policy: the policy that guided the sampler
    :param trajectory: imagined trajectories
    :return: the standardised action std (section 1.5)
    """
    return standardized_action_stats(policy, trajectory)[0]


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
    :param update_states: the paper's ablation: with ``"grad"`` guidance, after the actions' step, also move the
        guidance states toward higher ``log pi`` of the guided actions and recompute the posterior mean from them, in the
        reference's order and units (see ``_guide_states``); no effect with the other guidance types, as there
    :param action_guidance_noise_scale: multiplier of the posterior std added to the actions after each guidance step
    :param compile: run the guided denoising loop through ``torch.compile``, ``compiled_block_steps`` steps per compiled
        call (fuses the elementwise work around the networks' matrix products and removes per-step call overhead; the
        first imagination pays the compilation, tens of seconds on a CPU); on CUDA the blocks replay as CUDA graphs.
        The samples equal the eager loop's to float rounding, drawn from the same random numbers. This project has had
        no GPU to measure the CUDA path on (its test runs where CUDA is present)
    """

    # Steps per compiled call: longer blocks cut per-call overhead, at the price of a longer first compilation (about
    # 40 s for the shipped CPU configuration's 16 steps on 2 cores). Measured in benchmarks/imagination_speed.py.
    compiled_block_steps: int = 16

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
        compile: bool = False,
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
        self.compile = compile
        self._compiled_block: Callable[..., tuple[th.Tensor, th.Tensor]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A compiled function is neither picklable nor worth copying: a copy compiles its own on first use.
        return {**self.__dict__, "_compiled_block": None}

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
        batch, device = obs0.shape[0], obs0.device
        shape = (batch, horizon, denoiser.transition_dim)
        x = inpaint(th.randn(shape, device=device, generator=generator), obs0)
        if actions is None:
            actions = th.randn((batch, horizon, denoiser.action_dim), device=device, generator=generator)
        # Hoisted out of the loop: the weights are fixed while sampling, so what the denoiser needs of every step is
        # computed once, for one row that broadcasts over the batch.
        conditionings, shared = denoiser.prepare_sampling(self.schedule.sampling_timesteps)  # (K, C) or None; tensors
        coefficients = self.schedule.sampling_coefficients  # (K, 5)
        start_policy = None
        if policy is not None and self.states_for_guidance == "recon":
            # The policy is evaluated at the predicted clean states, whose first row is always the inpainted start
            # state: its mean and std there are the same at every step, so evaluated once (a tenth of the policy's work
            # at H = 10). The posterior mean's first row is not the start state, so it keeps the full evaluation.
            start_policy = policy.action_distribution_params(normalizer.observations.unnormalize(obs0))
        g = th.as_tensor(guidance_scale, dtype=x.dtype, device=device)
        run = SamplingRun(denoiser, shared, normalizer, policy, obs0, g, start_policy)
        moves_actions = policy is not None and self.guidance_type != "none"
        # Compiled only for guided imagination, the hot path. Steps run in blocks of up to `compiled_block_steps`: one
        # compiled call per block removes the per-call overhead of small steps, and since every per-step number enters
        # as a tensor, blocks of the same length and clip pattern share one compiled graph.
        compiled = policy is not None and self.compile
        run_block = self._compiled(device) if compiled else self._run_block
        graphs = compiled and device.type == "cuda"
        if graphs:
            # A new round of CUDA-graph replays begins: the graphs may now reuse the memory of their last outputs.
            th.compiler.cudagraph_mark_step_begin()
        sampling_t = self.schedule.sampling_t
        clips = [self.state_change_clip is not None and t < self.state_change_clip_steps for t in sampling_t]
        for start in range(0, len(sampling_t), self.compiled_block_steps):
            stop = min(start + self.compiled_block_steps, len(sampling_t))
            final = stop == len(sampling_t)
            # Drawn here, step by step in a fixed order, so the compiled block draws nothing and both paths give the same
            # samples. The last step adds no noise.
            action_noise: list[th.Tensor] = []
            state_noise: list[th.Tensor] = []
            for _ in range(start, stop - 1 if final else stop):
                if moves_actions:
                    action_noise.append(th.randn(actions.shape, device=device, generator=generator))
                state_noise.append(th.randn(shape, device=device, generator=generator))
            x, actions = run_block(
                run,
                x,
                actions,
                None if conditionings is None else conditionings[start:stop],
                coefficients[start:stop],
                action_noise,
                state_noise,
                tuple(clips[start:stop]),
                final,
            )
        # A CUDA graph's outputs live in memory that its next replay overwrites: the caller gets its own copy.
        return (x.clone(), actions.clone()) if graphs else (x, actions)

    def _compiled(self, device: th.device) -> Callable[..., tuple[th.Tensor, th.Tensor]]:
        if self._compiled_block is None:
            # Shapes are fixed within a run (the imagination batch), so static shapes: no dynamic-shape guards. On CPU,
            # inductor's wrapper around its kernels in C++ rather than Python: 3-4% faster imagination at the CPU
            # configuration and no longer to compile (benchmarks/imagination_speed.py). On CUDA, CUDA graphs (what
            # mode="reduce-overhead" turns on): a block of steps replays as one launch, where eagerly each step
            # launches dozens of small kernels and the GPU waits on the launches.
            options: dict[str, str | int | bool | Callable[..., Any]] = {
                "cpp_wrapper": device.type == "cpu",
                "triton.cudagraphs": device.type == "cuda",
            }
            self._compiled_block = th.compile(self._run_block, dynamic=False, options=options)
        return self._compiled_block

    def _run_block(
        self,
        run: SamplingRun,
        x: th.Tensor,
        actions: th.Tensor,
        conditionings: th.Tensor | None,
        coefficients: th.Tensor,
        action_noise: list[th.Tensor],
        state_noise: list[th.Tensor],
        clips: tuple[bool, ...],
        final: bool,
    ) -> tuple[th.Tensor, th.Tensor]:
        """Consecutive denoising steps, ``final`` when the block ends with the sampler's last step; the noise of each
        step comes from the caller (``action_noise`` empty when the actions do not move)."""
        for i, clip_states in enumerate(clips):
            last = final and i == len(clips) - 1
            conditioning = None if conditionings is None else conditionings[i : i + 1]
            x, actions = self._step(
                run, x, actions, conditioning, coefficients[i],
                None if last or not action_noise else action_noise[i], None if last else state_noise[i], clip_states, last,
            )  # fmt: skip
        return x, actions

    def _step(
        self,
        run: SamplingRun,
        x: th.Tensor,
        actions: th.Tensor,
        conditioning: th.Tensor | None,
        coefficients: th.Tensor,
        action_noise: th.Tensor | None,
        state_noise: th.Tensor | None,
        clip_states: bool,
        final: bool,
    ) -> tuple[th.Tensor, th.Tensor]:
        """One denoising step (section 1.4): ``x_t, a_t -> x_{t-1}, a_{t-1}``, or the final window and actions.

        Deterministic given the noise, which the caller draws (``None`` at the final step)."""
        denoiser, denoiser_shared, normalizer, policy, obs0, guidance_scale, _ = run
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar, coef_x0, coef_xt, std = coefficients.unbind()
        # 1. Predict the clean window; the network sees the actions scaled as in training (no action noise).
        out = denoiser.denoise_sampling(x, sqrt_alpha_bar * actions, conditioning, denoiser_shared)
        x0_hat = inpaint((x - sqrt_one_minus_alpha_bar * out) / sqrt_alpha_bar if self.predict_epsilon else out, obs0)
        # 2. DDPM posterior mean of the next, less noisy window.
        mean = self._posterior_mean(x0_hat, x, coef_x0, coef_xt, clip_states)
        if policy is not None and (self.guidance_type != "none" or final):
            # 4. The policy at the guidance states, once for the whole batch (the "none" ablation leaves the actions at
            # their initial noise until the final clamp).
            guide_states = (x0_hat if self.states_for_guidance == "recon" else mean)[..., : obs0.shape[-1]]
            pi_mean, pi_std = self._policy_at(run, normalizer.observations.unnormalize(guide_states))
            actions, guided_raw_actions = self._guide_actions(
                actions, pi_mean, pi_std, normalizer, guidance_scale, std, action_noise, final
            )
            if self.update_states and self.guidance_type == "grad" and not final:
                # Ablation (section 1.4, step 7), after the actions' step as in the reference; the posterior mean
                # recomputed without the late-step clip, as there.
                x0_hat = self._guide_states(x0_hat, guide_states, guided_raw_actions, normalizer, policy, guidance_scale, obs0)
                mean = self._posterior_mean(x0_hat, x, coef_x0, coef_xt, clip_states=False)
        if final:
            # 5. Final step: no noise (at t = 0 the mean is x0_hat up to the state clip).
            return mean, actions
        assert state_noise is not None
        # 6. The next, less noisy window: the posterior mean plus the step's noise, the start state inpainted.
        return inpaint(mean + std * state_noise, obs0), actions

    @staticmethod
    def _policy_at(run: SamplingRun, raw_obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The policy's mean and std at raw states (B, H, O), each (B, H, A); the first row from the run's start states
        when the sampler has evaluated the policy there once."""
        assert run.policy is not None
        if run.start_policy is None:
            return run.policy.action_distribution_params(raw_obs)
        mean, std = run.policy.action_distribution_params(raw_obs[:, 1:])
        start_mean, start_std = run.start_policy
        return th.cat([start_mean[:, None], mean], dim=1), th.cat([start_std[:, None], std], dim=1)

    def _clamp(self, raw_actions: th.Tensor, mean: th.Tensor, std: th.Tensor) -> th.Tensor:
        if self.action_clip_std is None:
            return raw_actions
        width = self.action_clip_std * std
        return th.maximum(th.minimum(raw_actions, mean + width), mean - width)

    def _posterior_mean(
        self, x0_hat: th.Tensor, x_t: th.Tensor, coef_x0: th.Tensor, coef_xt: th.Tensor, clip_states: bool
    ) -> th.Tensor:
        mean = DiffusionSchedule.q_posterior_mean(x0_hat, x_t, coef_x0, coef_xt)
        if clip_states:
            # 3. Late-step state clip: the last few steps may only nudge the window (reference clip_state_change).
            assert self.state_change_clip is not None
            mean = x_t + (mean - x_t).clamp(-self.state_change_clip, self.state_change_clip)
        return mean

    def _guide_actions(
        self,
        actions: th.Tensor,
        mean: th.Tensor,
        std: th.Tensor,
        normalizer: TransitionNormalizer,
        guidance_scale: th.Tensor,
        noise_std: th.Tensor,
        noise: th.Tensor | None,
        final: bool,
    ) -> tuple[th.Tensor, th.Tensor]:
        """Steps 5 and 6, given the policy's ``mean`` and ``std`` at the guidance
        states; ``noise_std`` is the step's posterior std and ``noise`` the step's action noise.

        :return: the new normalised actions, and the raw actions before the noise is added (after the gradient step
            with ``"grad"``: those the ``update_states`` ablation moves the states toward)"""
        raw_actions = self._clamp(normalizer.actions.unnormalize(actions), mean, std)
        if final:
            # 5. Final step: clamp only.
            return (normalizer.actions.normalize(raw_actions) if self.action_clip_std is not None else actions), raw_actions
        assert noise is not None
        if self.guidance_type == "sample":
            raw_actions = mean + std * noise
            return normalizer.actions.normalize(raw_actions), raw_actions
        # 6. Gradient step on log pi in raw action units, then back to normalised units with the posterior's noise.
        # The step g * (mu - a) / sigma^2 moves a fraction g / sigma^2 of the way to the policy mean. Past 1 it overshoots
        # the mean, and past 2 the actions' spread grows with g: the guidance tuner reads that as too little guidance
        # and raises g further, a runaway the reference is open to as the policy std shrinks. Capping the step at the
        # mean (g <= sigma^2) removes it and changes nothing while g < sigma^2.
        step_size = th.minimum(std.square(), guidance_scale)
        raw_actions = raw_actions + step_size * gaussian_log_prob_grad(raw_actions, mean, std)
        return normalizer.actions.normalize(raw_actions) + self.action_guidance_noise_scale * noise_std * noise, raw_actions

    def _guide_states(
        self,
        x0_hat: th.Tensor,
        guide_states: th.Tensor,
        raw_actions: th.Tensor,
        normalizer: TransitionNormalizer,
        policy: GuidancePolicy,
        guidance_scale: th.Tensor,
        obs0: th.Tensor,
    ) -> th.Tensor:
        """
        The ``update_states`` ablation's step on the states, as the reference takes it (``policy_guided_sample_fn`` in
        polygrad/sampling/functions.py), only with ``guidance_type="grad"`` and never at the final step.

        What the reference does that one might not expect:

        - it runs after the actions' guidance step, so the states move toward higher ``log pi`` of the already guided
          actions (clamped, stepped, before their noise; not clamped again at the policy's new mean);
        - the gradient is taken with respect to the *normalised* guidance states (its policy unnormalises them inside
          the graph), and the step ``g * grad`` is in normalised units: a raw change of ``g * sigma_obs^2 * grad_raw``,
          with ``g`` the guidance scale itself (the actions' cap ``g <= sigma_pi^2`` does not apply here);
        - the moved guidance states replace the predicted clean states, whichever states guided: with
          ``states_for_guidance="posterior_mean"`` the moved posterior-mean states become the clean window's states;
        - the posterior mean recomputed from the moved window is not clipped again by the late-step state clip.

        :param x0_hat: predicted clean windows, normalised, (B, H, D)
        :param guide_states: the states that guided the actions, normalised, (B, H, O)
        :param raw_actions: the guided actions in the policy's units, (B, H, A)
        :return: ``x0_hat`` with its states moved and the start state inpainted again
        """
        with th.enable_grad():
            states = guide_states.detach().requires_grad_(True)
            mean, std = policy.action_distribution_params(normalizer.observations.unnormalize(states))
            log_prob = th.distributions.Normal(mean, std).log_prob(raw_actions).sum()
            (grad,) = th.autograd.grad(log_prob, states)
        new_states = guide_states + guidance_scale * grad
        return inpaint(th.cat([new_states, x0_hat[..., guide_states.shape[-1] :]], dim=-1), obs0)
