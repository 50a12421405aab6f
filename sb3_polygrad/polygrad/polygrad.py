"""PolyGRAD: policy-guided trajectory diffusion world models, as a Stable-Baselines3 algorithm."""

import io
import math
import numbers
import pathlib
import warnings
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, ClassVar, Literal, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutReturn, Schedule, TrainFreq
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_polygrad.buffers import PolyGRADReplayBuffer
from sb3_polygrad.common.atomic import atomic_path
from sb3_polygrad.common.simulator import open_loop_errors
from sb3_polygrad.common.termination_rules import RULES, TerminationRule, termination_rule
from sb3_polygrad.polygrad.actor_critic import ActorCriticConfig, AdaptiveLearningRate, ImaginedActorCritic
from sb3_polygrad.polygrad.arguments import check_arguments
from sb3_polygrad.polygrad.device_advice import check_compiler, warn_if_paper_sized_on_cpu
from sb3_polygrad.polygrad.env_outputs import check_step, refuse_non_finite
from sb3_polygrad.polygrad.imagination_methods import (
    IMAGINATIONS,
    ClosedLoopImagination,
    GuidedImagination,
    Imagination,
    ImaginationName,
    SequentialImagination,
    SimulatorImagination,
)
from sb3_polygrad.polygrad.policies import Actor, MlpPolicy, PolyGRADPolicy
from sb3_polygrad.polygrad.window_gate import WindowGate
from sb3_polygrad.world_model.sampler import GuidanceStates, GuidanceType, standardized_action_stats
from sb3_polygrad.world_model.training import world_model_update
from sb3_polygrad.world_model.types import ImaginedTrajectory
from sb3_polygrad.world_model.world_model import DENOISERS, DenoiserName, DiffusionWorldModel

SelfPolyGRAD = TypeVar("SelfPolyGRAD", bound="PolyGRAD")
ImaginedTerminations = Literal["world_model", "env_rule"]
IMAGINED_TERMINATIONS: tuple[str, ...] = ("world_model", "env_rule")


class PolyGRAD(OffPolicyAlgorithm):
    """
    PolyGRAD: World Models via Policy-Guided Trajectory Diffusion (Rigter, Yamada & Posner, TMLR 2024).

    Paper: https://arxiv.org/abs/2312.08533 -- reference code: https://github.com/marc-rigter/polygrad-world-models

    Real steps fill a replay buffer; every ``train_freq`` steps a diffusion world model takes ``gradient_steps`` updates
    on real H-step windows, then (after ``world_model_warmup`` more steps) it imagines ``imagination_batch_size``
    on-policy trajectories from real start states with the policy-guided sampler, and the actor-critic takes one step on
    them. The defaults are the paper's (section 4.1), except that ``learning_starts`` random steps
    are counted in ``num_timesteps`` (the reference does not count its 5000 prefill steps).

    :param policy: the policy model to use (``"MlpPolicy"``)
    :param env: the environment to learn from (a ``Box`` action space and a flat ``Box`` observation space)
    :param learning_rate: the actor's (largest) learning rate; a float or a schedule of the remaining progress
    :param critic_learning_rate: the critic's learning rate (AdamW)
    :param world_model_learning_rate: the denoiser's learning rate (Adam)
    :param buffer_size: size of the replay buffer of real transitions
    :param learning_starts: env steps of uniform random actions before any training
    :param batch_size: real windows per world-model update
    :param imagination_batch_size: imagined trajectories per actor-critic update
    :param tau: soft-update coefficient of the critic's target (the reference's EMA decay 0.995)
    :param gamma: discount factor
    :param gae_lambda: GAE lambda of the imagined returns
    :param reward_scale: factor on the imagined rewards before the actor-critic, so that the critic learns scaled
        returns (the policy gradient keeps its direction: advantages are standardised). Not in the paper: this package's
        extension for long discounts, whose returns a critic would otherwise take many steps to reach (Adam moves each
        weight by about its learning rate per step)
    :param ent_coef: entropy bonus weight
    :param normalize_advantage: standardise advantages over the imagined batch
    :param max_grad_norm: gradient-norm clip of actor and critic, each
    :param train_freq: train every ``train_freq`` env steps (per env), or a tuple ``(n, "step" | "episode")``
    :param gradient_steps: world-model updates per training call
    :param agent_gradient_steps: imagine-then-update rounds of the actor-critic per training call
    :param world_model_warmup: env steps after ``learning_starts`` in which only the world model trains
    :param horizon: H, length of the diffused (and imagined) trajectories
    :param denoiser: ``"mlp"`` (residual MLP, the paper's), ``"causal_mlp"`` (the same, masked so that no state sees the
        actions that follow it: imagination that obeys the dynamics, ``world_model/causal_mlp.py``) or ``"transformer"``
    :param n_diffusion_steps: N, diffusion steps of the world model
    :param noise_schedule_tau: temperature of the cosine noise schedule (paper: 0.1 for Hopper, else 1.0)
    :param n_sampling_steps: denoising steps of imagination, strided over N (``None``: all N, as the paper)
    :param guidance_type: ``"grad"`` (PolyGRAD), ``"sample"`` or ``"none"`` (the paper's ablations)
    :param guidance_scale: initial guidance scale g
    :param tune_guidance: adapt g so that imagined actions have standardised std 1 (only with ``"grad"``)
    :param guidance_learning_rate: SGD rate on ``log g``
    :param action_clip_std: clamp imagined actions to ``mu +- action_clip_std * sigma`` (``None``: off, an ablation)
    :param state_change_clip: limit of the per-step change of the window in the last denoising steps (``None``: off)
    :param state_change_clip_steps: the clip applies while the diffusion step ``t < state_change_clip_steps``
        (``None``: the reference's ``t <= 10`` at N = 128, scaled to N)
    :param states_for_guidance: condition the policy on ``"recon"`` (predicted clean) or ``"posterior_mean"`` states
    :param update_states: also guide the predicted states toward higher ``log pi`` (the paper's ablation, as the
        reference runs it: with ``guidance_type="grad"`` only, after the actions' step; ``PolicyGuidedSampler``)
    :param action_guidance_noise_scale: scale of the noise added to the actions at each guidance step
    :param compile_imagination: run the guided sampler's denoising loop through ``torch.compile``, as CUDA graphs on a
        GPU (same samples to float rounding; ``benchmarks/imagination_speed.py`` measures the gain; the first
        imagination pays the compilation; on a CPU it needs a C++ compiler)
    :param target_policy_update: target mean ``|delta log pi|`` of one actor step
    :param adaptive_actor_lr: adapt the actor's learning rate toward ``target_policy_update``
    :param actor_lr_learning_rate: Adam rate of the adaptive actor learning rate (on its log)
    :param line_search: retry actor steps until the update size is within tolerance
    :param line_search_tolerance: relative tolerance of the line search
    :param line_search_ratio: rate factor per line-search retry
    :param line_search_max_iters: most line-search retries per step
    :param censored_log_prob: in the actor's loss, score an imagined action past the action bounds by the probability
        of being clipped there, as the env clips it, instead of by the Gaussian density (the paper uses the density,
        under which actions past the bound keep pushing the tanh mean into saturation)
    :param action_std_schedule: ``(initial, final)``: the policy's action std is then not learnt but moves linearly
        from ``initial`` to ``final`` over the learning budget, as the exploration std of DrQ-v2 does (``None``: learnt,
        as in the paper). This package's extension: with a learnt std the actor-critic optimises its noisy samples, and
        on Hopper a policy whose samples hop could fall with its mean action, which deterministic evaluation takes; a
        std that ends small makes the mean action the behaviour it learnt. Both values must exceed the policy's
        ``min_std``
    :param imagination: where the actor-critic's trajectories come from (``polygrad/imagination_methods.py``):
        ``"guided"``, the paper's policy-guided sampler; ``"closed_loop"``, this package's extension: one staggered
        diffusion pass of a causal world model in which every action is the policy's own sample at the state it is taken
        in, so the trajectories follow both the world model's dynamics and the policy (needs ``denoiser="causal_mlp"``;
        the world model then trains with ``per_row_noise=True``; costs ``round(imagination_row_lag * (H - 1))`` more
        denoiser calls than guided sampling); ``"sequential"``, a diagnostic that samples the causal world model one
        step after another (H - 1 sampler passes); ``"simulator"``, a diagnostic that rolls the policy out in the
        simulator itself from the same recorded start states (a perfect world model; the world model still trains and
        is evaluated; needs a MuJoCo env built from a registered id)
    :param imagination_row_lag: with ``imagination="closed_loop"``, the denoising iterations by which each imagined
        step lags the step before it (0: all steps denoised together; the number of sampling steps: one after another)
    :param imagination_start_window: draw imagination's start states from the newest ``imagination_start_window``
        transitions of the replay buffer (counted over all envs, as ``buffer_size``); ``None``: from the whole buffer,
        as the paper. Not in the paper: this package's extension, so that the on-policy actor-critic learns at the
        states its policy now visits, not mostly at those of its early, falling policies, whose large advantages
        otherwise dominate each step (``docs/results.md``). The world model still trains on the whole buffer
    :param imagined_terminations: where the imagined trajectories' terminal flags come from: ``"world_model"``, its own
        predictions, as the paper; ``"env_rule"``, the task's known termination rule applied to the imagined states
        (``common/termination_rules.py``: Hopper, Walker2d, Ant, Humanoid, InvertedPendulum, and the tasks that never
        terminate), as MBPO does. Not in the paper: this package's extension, for a world model that rarely predicts
        the rare falls it was trained on, so that the actor-critic does not learn that falling is free
        (``docs/results.md``)
    :param world_model_eval_freq: env steps between open-loop world-model errors against the simulator (``0``: never);
        needs a MuJoCo env built from a registered id
    :param world_model_eval_trajectories: trajectories replayed in the simulator at each evaluation
    :param world_model_kwargs: further ``DiffusionWorldModel`` arguments (``denoiser_kwargs``, EMA, ``predict_epsilon``)
    :param replay_buffer_class: replay buffer class (a ``PolyGRADReplayBuffer``)
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param policy_kwargs: keyword arguments of the policy (``net_arch``, ``init_std``, ``min_std``, ...)
    :param stats_window_size: window size of the rollout logging (episodes)
    :param tensorboard_log: TensorBoard log directory (``None``: no logging)
    :param verbose: 0 no output, 1 info, 2 debug
    :param seed: seed of the pseudo random generators
    :param device: device (``"cpu"``, ``"cuda"``, ``"auto"``)
    :param _init_setup_model: whether to build the networks at creation
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    policy: PolyGRADPolicy
    actor: Actor
    replay_buffer: PolyGRADReplayBuffer
    world_model: DiffusionWorldModel

    def __init__(
        self,
        policy: str | type[PolyGRADPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-5,
        critic_learning_rate: float = 3e-4,
        world_model_learning_rate: float = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 5000,
        batch_size: int = 256,
        imagination_batch_size: int = 1024,
        tau: float = 0.005,
        gamma: float = 0.99,
        gae_lambda: float = 0.9,
        reward_scale: float = 1.0,
        ent_coef: float = 1e-5,
        normalize_advantage: bool = True,
        max_grad_norm: float = 0.1,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 4,
        agent_gradient_steps: int = 1,
        world_model_warmup: int = 1000,
        horizon: int = 10,
        denoiser: DenoiserName = "mlp",
        n_diffusion_steps: int = 128,
        noise_schedule_tau: float = 1.0,
        n_sampling_steps: int | None = None,
        guidance_type: GuidanceType = "grad",
        guidance_scale: float = 0.005,
        tune_guidance: bool = True,
        guidance_learning_rate: float = 3e-3,
        action_clip_std: float | None = 3.0,
        state_change_clip: float | None = 0.25,
        state_change_clip_steps: int | None = None,
        states_for_guidance: GuidanceStates = "recon",
        update_states: bool = False,
        action_guidance_noise_scale: float = 1.0,
        compile_imagination: bool = False,
        target_policy_update: float = 0.01,
        adaptive_actor_lr: bool = True,
        actor_lr_learning_rate: float = 3e-4,
        line_search: bool = True,
        line_search_tolerance: float = 0.2,
        line_search_ratio: float = 0.8,
        line_search_max_iters: int = 50,
        censored_log_prob: bool = False,
        action_std_schedule: tuple[float, float] | None = None,
        imagination: ImaginationName = "guided",
        imagination_row_lag: float = 1.0,
        imagination_start_window: int | None = None,
        imagined_terminations: ImaginedTerminations = "world_model",
        world_model_eval_freq: int = 10_000,
        world_model_eval_trajectories: int = 100,
        world_model_kwargs: dict[str, Any] | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        check_arguments(locals())  # every numeric argument against its range (polygrad/arguments.py), before any use
        if env is not None and not isinstance(env, str):
            # Before SB3's own checks, whose messages point to policies PolyGRAD does not have.
            self._check_spaces(env.observation_space, env.action_space)
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            support_multi_env=True,
            sde_support=False,
        )
        self.critic_learning_rate = critic_learning_rate
        self.world_model_learning_rate = world_model_learning_rate
        self.imagination_batch_size = imagination_batch_size
        self.gae_lambda = gae_lambda
        self.reward_scale = reward_scale
        self.ent_coef = ent_coef
        self.normalize_advantage = normalize_advantage
        self.max_grad_norm = max_grad_norm
        self.target_policy_update = target_policy_update
        self.line_search = line_search
        self.line_search_tolerance = line_search_tolerance
        self.line_search_ratio = line_search_ratio
        self.line_search_max_iters = line_search_max_iters
        self.censored_log_prob = censored_log_prob
        self.action_std_schedule = action_std_schedule
        self.imagination = imagination
        self.imagination_row_lag = imagination_row_lag
        self.imagination_start_window = imagination_start_window
        self.imagined_terminations = imagined_terminations
        self.agent_gradient_steps = agent_gradient_steps
        self.world_model_warmup = world_model_warmup
        self.horizon = horizon
        self.denoiser = denoiser
        self.n_diffusion_steps = n_diffusion_steps
        self.noise_schedule_tau = noise_schedule_tau
        self.n_sampling_steps = n_sampling_steps
        self.guidance_type = guidance_type
        self.guidance_scale = guidance_scale
        self.tune_guidance = tune_guidance
        self.guidance_learning_rate = guidance_learning_rate
        self.action_clip_std = action_clip_std
        self.state_change_clip = state_change_clip
        self.state_change_clip_steps = state_change_clip_steps
        self.states_for_guidance = states_for_guidance
        self.update_states = update_states
        self.action_guidance_noise_scale = action_guidance_noise_scale
        self.compile_imagination = compile_imagination
        self.adaptive_actor_lr = adaptive_actor_lr
        self.actor_lr_learning_rate = actor_lr_learning_rate
        self.world_model_eval_freq = world_model_eval_freq
        self.world_model_eval_trajectories = world_model_eval_trajectories
        self.world_model_kwargs = world_model_kwargs or {}
        self._check_arguments()
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not isinstance(action_space, spaces.Box):
            raise ValueError(
                f"PolyGRAD needs a continuous (Box) action space, got {action_space}: its guidance is a gradient of "
                "log pi with respect to the actions"
            )
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(
                f"PolyGRAD needs a flat Box observation space (proprioceptive states), got {observation_space}; "
                "image and Dict observations are not supported"
            )

    def _check_arguments(self) -> None:
        """Reject what PolyGRAD cannot run, with a clear message, before anything is built."""
        if self.env is not None:  # load() builds the model without an env, and restores the spaces afterwards
            self._check_spaces(self.observation_space, self.action_space)
            if isinstance(self.env, VecNormalize) or self._vec_normalize_env is not None:
                raise ValueError("PolyGRAD normalises its own inputs: do not wrap the env in VecNormalize")
        if self.imagined_terminations not in IMAGINED_TERMINATIONS:
            raise ValueError(
                f"imagined_terminations must be one of {IMAGINED_TERMINATIONS}, got {self.imagined_terminations!r}"
            )
        if self.learning_starts < self.horizon:
            raise ValueError(f"learning_starts ({self.learning_starts}) must be >= horizon ({self.horizon}) to hold a window")
        if self.env is not None:
            # Training waits for batch_size distinct windows (WindowGate): a buffer that cannot hold them never trains.
            n_windows = self.n_envs * (self.buffer_size // self.n_envs - self.horizon + 1)
            if n_windows < self.batch_size:
                raise ValueError(
                    f"buffer_size {self.buffer_size} holds at most {max(n_windows, 0)} {self.horizon}-step windows over "
                    f"{self.n_envs} env(s), fewer than batch_size {self.batch_size}"
                )
            if self.imagination_start_window is not None:
                PolyGRADReplayBuffer.check_newest(
                    "imagination_start_window", self.imagination_start_window, self.horizon, self.n_envs
                )
        spec = self.env.get_attr("spec")[0] if self.env is not None else None
        max_steps = spec.max_episode_steps if spec is not None else None
        if max_steps is not None and self.horizon >= max_steps:
            warnings.warn(f"horizon {self.horizon} is not shorter than the episode limit {max_steps}: few windows exist")
        if self.tune_guidance and self.guidance_type != "grad":
            warnings.warn(f"tune_guidance only acts with guidance_type='grad'; it is ignored with {self.guidance_type!r}")
        if self.action_std_schedule is not None and (
            not isinstance(self.action_std_schedule, (tuple, list))
            or len(self.action_std_schedule) != 2
            or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in self.action_std_schedule
            )
        ):
            raise ValueError(f"action_std_schedule must be (initial, final), two numbers, got {self.action_std_schedule!r}")
        if self.imagination_batch_size < 64:
            warnings.warn(f"imagination_batch_size={self.imagination_batch_size} makes noisy actor-critic steps")

    def _check_imagination(self) -> None:
        """Reject an imagination method that the world model or the env cannot run."""
        if self.imagination not in IMAGINATIONS:
            raise ValueError(f"imagination must be one of {IMAGINATIONS}, got {self.imagination!r}")
        causal = self.denoiser in DENOISERS and DENOISERS[self.denoiser].causal_states
        if self.imagination in ("sequential", "closed_loop") and not causal:
            raise ValueError(
                f"imagination={self.imagination!r} samples states from past actions only: it needs denoiser='causal_mlp'"
            )
        if self.imagination == "closed_loop" and self.world_model_kwargs.get("per_row_noise") is False:
            raise ValueError("imagination='closed_loop' denoises rows at different noise levels: it needs per_row_noise")
        if self.imagination == "simulator" and self.env is not None and not self.env.has_attr("state_vector"):
            raise ValueError("imagination='simulator' rolls out the policy in the simulator: it needs a MuJoCo env")

    def _setup_model(self) -> None:
        if self.replay_buffer_class is None:
            self.replay_buffer_class = PolyGRADReplayBuffer
        if not issubclass(self.replay_buffer_class, PolyGRADReplayBuffer):
            raise ValueError("PolyGRAD samples H-step windows: replay_buffer_class must subclass PolyGRADReplayBuffer")
        super()._setup_model()
        self._create_aliases()
        if self.action_std_schedule is not None:  # a YAML list from the zoo, or a tuple that save() wrote as a JSON list
            initial, final = self.action_std_schedule  # checked as two numbers by _check_arguments
            self.action_std_schedule = (initial, final)
            if min(initial, final) <= self.actor.min_std:
                raise ValueError(
                    f"action_std_schedule {(initial, final)} must stay above the policy's min_std ({self.actor.min_std})"
                )
        self._schedule_action_std()
        check_compiler(self.device, self.compile_imagination)  # before anything is built
        obs_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]  # type: ignore[index]
        self.world_model = DiffusionWorldModel(
            obs_dim,
            action_dim,
            horizon=self.horizon,
            denoiser=self.denoiser,
            n_diffusion_steps=self.n_diffusion_steps,
            noise_schedule_tau=self.noise_schedule_tau,
            n_sampling_steps=self.n_sampling_steps,
            sampler_kwargs=dict(
                guidance_type=self.guidance_type,
                action_clip_std=self.action_clip_std,
                state_change_clip=self.state_change_clip,
                state_change_clip_steps=self.state_change_clip_steps,
                states_for_guidance=self.states_for_guidance,
                update_states=self.update_states,
                action_guidance_noise_scale=self.action_guidance_noise_scale,
                compile=self.compile_imagination,
            ),
            **{"per_row_noise": self.imagination == "closed_loop", **self.world_model_kwargs},
        ).to(self.device)
        warn_if_paper_sized_on_cpu(self.device, self.world_model.denoiser)
        self.world_model_optimizer = th.optim.Adam(self.world_model.denoiser.parameters(), lr=self.world_model_learning_rate)
        self.log_guidance_scale = th.tensor(math.log(self.guidance_scale), device=self.device)
        self.actor_lr = AdaptiveLearningRate(self.lr_schedule(1.0), self.actor_lr_learning_rate, self.device)
        self.learner = ImaginedActorCritic(self.policy)
        self.imaginer = self._make_imagination()
        self._termination_rule = self._make_termination_rule()
        self._open_loop_env: gym.Env | None = None
        self._last_sim_states: np.ndarray | None = None
        self._last_world_model_eval = 0
        self._window_gate = WindowGate()

    def _schedule_action_std(self) -> None:
        """Set the policy's std to ``action_std_schedule``'s value at the current progress (no-op without one)."""
        if self.action_std_schedule is None:
            return
        initial, final = self.action_std_schedule
        progress = min(max(self._current_progress_remaining, 0.0), 1.0)  # 1 at the start of the budget, 0 at its end
        self.actor.fix_std(final + (initial - final) * progress)

    def _make_imagination(self) -> Imagination:
        """The imagination method named by ``imagination`` (``polygrad/imagination_methods.py``)."""
        if self.imagination == "world_model":  # a checkpoint saved before guided imagination got its name
            self.imagination = "guided"
        self._check_imagination()  # here, not in _check_arguments: load() restores the name after the constructor
        wm, policy = self.world_model, self.policy
        guided = GuidedImagination(
            wm,
            policy,
            self.log_guidance_scale,
            self.tune_guidance and self.guidance_type == "grad",
            self.guidance_learning_rate,
        )
        if self.imagination == "guided":
            return guided
        closed_loop = ClosedLoopImagination(wm, policy, self.imagination_row_lag) if wm.per_row_noise else None
        if self.imagination == "closed_loop":
            assert closed_loop is not None
            return closed_loop
        if self.imagination == "sequential":
            return SequentialImagination(wm, policy)
        return SimulatorImagination(
            lambda n: [env for env in (self._make_open_loop_env() for _ in range(n)) if env is not None],
            policy,
            self.action_space.low,  # type: ignore[attr-defined]
            self.action_space.high,  # type: ignore[attr-defined]
            evaluated=closed_loop or guided,
        )

    def _make_termination_rule(self) -> TerminationRule | None:
        """The env's termination rule where it is known (None otherwise, or without an env); required by
        ``imagined_terminations="env_rule"``."""
        rule = termination_rule(self.env) if self.env is not None else None
        if rule is None and self.env is not None and self.imagined_terminations == "env_rule":
            spec = self.env.get_attr("spec")[0]
            raise ValueError(
                f"imagined_terminations='env_rule' knows the termination rules of {', '.join(RULES)}, made from their "
                f"registered ids; not that of {spec.id if spec is not None else 'an env without a registered id'}: "
                "use imagined_terminations='world_model'"
            )
        return rule

    def _actor_critic_config(self) -> ActorCriticConfig:
        return ActorCriticConfig(
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            reward_scale=self.reward_scale,
            ent_coef=self.ent_coef,
            normalize_advantage=self.normalize_advantage,
            max_grad_norm=self.max_grad_norm,
            target_policy_update=self.target_policy_update,
            line_search=self.line_search,
            line_search_tolerance=self.line_search_tolerance,
            line_search_ratio=self.line_search_ratio,
            line_search_max_iters=self.line_search_max_iters,
            censored_log_prob=self.censored_log_prob,
        )

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    # ----- real-environment collection ------------------------------------------------------------------------------------

    def _read_sim_states(self) -> np.ndarray | None:
        """``[qpos, qvel]`` of every env, or ``None`` where the env is not a MuJoCo env."""
        assert self.env is not None
        if not self.env.has_attr("state_vector"):
            return None
        return np.stack(self.env.env_method("state_vector"))

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> Any:
        resets = reset_num_timesteps or self._last_obs is None  # SB3 resets the envs in these cases
        if resets:
            self.replay_buffer.truncate_open_episodes()
        self._window_gate.recheck()
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if resets:
            assert isinstance(self._last_obs, np.ndarray)
            refuse_non_finite("observation from reset()", self._last_obs, self.num_timesteps)
        if resets or self._last_sim_states is None:
            self._last_sim_states = self._read_sim_states()
        return result

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        """
        SB3's collection, continued while training is due but the buffer holds fewer than ``batch_size`` windows (after
        ``load`` without the replay buffer): SB3 calls ``train`` after every collection once ``learning_starts`` is
        passed, and ``train`` samples windows. If ``learn``'s steps run out first, it ends without training.
        """
        assert isinstance(replay_buffer, PolyGRADReplayBuffer)
        args = (env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval)
        rollout = super().collect_rollouts(*args)
        while (
            rollout.continue_training
            and self.num_timesteps > learning_starts
            and not self._window_gate.ready(replay_buffer, self.horizon, self.batch_size)
        ):
            if self.num_timesteps >= self._total_timesteps:
                return rollout._replace(continue_training=False)
            more = super().collect_rollouts(*args)
            rollout = RolloutReturn(
                rollout.episode_timesteps + more.episode_timesteps,
                rollout.n_episodes + more.n_episodes,
                more.continue_training,
            )
        return rollout

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Uniform random actions before ``learning_starts``, then samples of the policy. The buffer keeps the *unclipped*
        sample (in scaled units) and the env receives it clipped: the world model then learns the env's clipping, which
        guided imagination relies on, since its Gaussian actions also leave [-1, 1] (section 2.3).
        """
        if self.num_timesteps < learning_starts:
            scaled = np.random.uniform(-1.0, 1.0, size=(n_envs, *self.action_space.shape))  # type: ignore[misc]
        else:
            assert self._last_obs is not None
            obs = th.as_tensor(self._last_obs, device=self.device).float()
            with th.no_grad():
                scaled = self.policy.sample_actions(obs).cpu().numpy()
        return self.policy.unscale_action(np.clip(scaled, -1.0, 1.0)), scaled.astype(np.float32)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        assert isinstance(new_obs, np.ndarray)
        check_step(new_obs, reward, infos, self.num_timesteps)  # before the buffer, the normaliser or the next action
        if self._last_sim_states is not None:
            for info, sim_state in zip(infos, self._last_sim_states, strict=True):
                info["sim_state"] = sim_state
        truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        # The normaliser sees every real transition as it arrives (padding never).
        self.world_model.normalizer.update(
            th.as_tensor(self._last_obs, device=self.device),
            th.as_tensor(buffer_action, device=self.device),
            th.as_tensor(reward, device=self.device),
            th.as_tensor(dones & ~truncated, device=self.device),
        )
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._last_sim_states = self._read_sim_states()

    # ----- training ---------------------------------------------------------------------------------------------------------

    def train(self, gradient_steps: int, batch_size: int) -> None:
        """Algorithm 2 of the paper: world-model updates, then imagine, update the actor-critic and tune guidance."""
        self.policy.set_training_mode(True)
        update_learning_rate(self.critic.optimizer, self.critic_learning_rate)
        self._schedule_action_std()
        self._train_world_model(gradient_steps, batch_size)
        if self.num_timesteps > self.learning_starts + self.world_model_warmup:
            for _ in range(self.agent_gradient_steps):
                start = self.replay_buffer.sample_windows(
                    self.imagination_batch_size, self.horizon, newest=self.imagination_start_window
                )
                trajectory = self._with_terminations(self.imaginer.imagine(start))
                self._record_imagination(trajectory)
                self._train_actor_critic(trajectory)
        if self.world_model_eval_freq > 0 and self.num_timesteps - self._last_world_model_eval >= self.world_model_eval_freq:
            self._last_world_model_eval = self.num_timesteps
            self._evaluate_world_model()
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _with_terminations(self, trajectory: ImaginedTrajectory) -> ImaginedTrajectory:
        """``trajectory`` with the terminal flags ``imagined_terminations`` names."""
        if self.imagined_terminations == "world_model":
            return trajectory
        if self._termination_rule is None:  # _setup_model and set_env refuse a task without a rule: no env here
            raise RuntimeError(
                "imagined_terminations='env_rule' reads the task's termination rule off its env, and this model has "
                "none: load it with env=... or call set_env(env) first"
            )
        return replace(trajectory, dones=self._termination_rule.trajectory_dones(trajectory.observations))

    def imagine(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        """
        Imagine trajectories from given start states as the actor-critic's are imagined: with the world model's
        imagination of ``imagination`` (for ``"simulator"``, the one it stands in for) and the terminal flags of
        ``imagined_terminations``.

        :param obs0: raw start states, shape (B, O), on the model's device
        :param generator: random generator for reproducible samples
        :return: trajectories of ``horizon`` steps, in raw units
        """
        return self._with_terminations(self.imaginer.world_model_imagination().imagine_from(obs0, generator))

    def _train_world_model(self, gradient_steps: int, batch_size: int) -> None:
        self.world_model.train()
        losses = [
            world_model_update(
                self.world_model, self.world_model_optimizer, self.replay_buffer.sample_windows(batch_size, self.horizon)
            )
            for _ in range(gradient_steps)
        ]
        self.logger.record("train/world_model_loss", float(np.mean(losses)))

    def _record_imagination(self, trajectory: ImaginedTrajectory) -> None:
        """Log how on-policy the imagined actions were, and let the imagination method adapt to it."""
        action_std, action_bias = standardized_action_stats(self.policy, trajectory)
        for name, value in self.imaginer.adapt(action_std, action_bias).items():
            self.logger.record(f"train/{name}", value)
        self.logger.record("train/imagined_action_std", action_std)
        self.logger.record("train/imagined_action_bias", action_bias)
        self.logger.record("imagination/reward_mean", trajectory.rewards[:, :-1].mean().item())
        self.logger.record("imagination/done_rate", trajectory.dones[:, :-1].mean().item())

    def _train_actor_critic(self, trajectory: ImaginedTrajectory) -> None:
        max_lr = self.lr_schedule(self._current_progress_remaining)
        actor_lr = min(self.actor_lr.value, max_lr) if self.adaptive_actor_lr else max_lr
        # The target critic moves before the targets are computed, as in the reference.
        with th.no_grad():
            th._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau)
        stats = self.learner.step(trajectory, self._actor_critic_config(), actor_lr, max_lr)
        if self.adaptive_actor_lr:
            self.actor_lr.update(stats.initial_update_size, self.target_policy_update, max_lr)
        self._n_updates += 1
        self.logger.record("train/actor_loss", stats.actor_loss)
        self.logger.record("train/critic_loss", stats.critic_loss)
        self.logger.record("train/entropy", stats.entropy)
        self.logger.record("train/std", self.actor.std().mean().item())
        self.logger.record("train/learning_rate", max_lr)  # the schedule's cap; the line search sets the actual rate
        self.logger.record("train/actor_learning_rate", stats.actor_learning_rate)
        self.logger.record("train/policy_update_size", stats.update_size)
        self.logger.record("train/line_search_steps", stats.line_search_steps)

    # ----- world-model evaluation -------------------------------------------------------------------------------------------

    def _make_open_loop_env(self) -> gym.Env | None:
        assert self.env is not None
        spec = self.env.get_attr("spec")[0]
        if self.replay_buffer.sim_states is None or spec is None:
            return None
        # A fresh, unwrapped instance of the task: the spec's own wrappers (Monitor) cannot be rebuilt, nor are needed.
        env = gym.make(spec.id, **spec.kwargs)
        env.reset(seed=self.seed)
        return env

    def _evaluate_world_model(self) -> None:
        """Log the open-loop state error of imagined trajectories against the simulator (``world_model/*``)."""
        if self._open_loop_env is None:
            self._open_loop_env = self._make_open_loop_env()
            if self._open_loop_env is None:
                self.world_model_eval_freq = 0  # not a MuJoCo env built from a registered id: nothing to compare with
                return
        # Own generators, seeded by the run's seed and step: logging must not change the training run it measures.
        rng = np.random.default_rng(None if self.seed is None else [self.seed, self.num_timesteps])
        generator = th.Generator(device=self.device).manual_seed(int(rng.integers(2**62)))
        batch = self.replay_buffer.sample_windows(self.world_model_eval_trajectories, self.horizon, rng)
        assert batch.sim_states is not None
        start_sim_states = batch.sim_states[:, 0].cpu().numpy()
        imagined = self.imaginer.world_model_imagination().imagine(batch, generator)
        # The same start states with the recorded actions: the gap between the two errors is what guidance costs. A
        # denoiser of whole windows reads states off the actions that follow them (in the data the behaviour policy chose
        # them from those states), so guided actions can pull imagined states away from the states they lead to.
        with_data_actions = self.world_model.sample_with_actions(batch.observations[:, 0], batch.actions, generator)
        for prefix, trajectory in (("", imagined), ("data_actions_", with_data_actions)):
            errors = open_loop_errors(
                self._open_loop_env,
                trajectory,
                start_sim_states,
                self.action_space.low,  # type: ignore[attr-defined]
                self.action_space.high,  # type: ignore[attr-defined]
            )
            state_mse = errors["state_mse"]
            assert isinstance(state_mse, np.ndarray)
            for k in sorted({1, 5, 10, self.horizon - 1}):
                if k < self.horizon:
                    self.logger.record(f"world_model/{prefix}state_mse_h{k}", float(state_mse[k]))
            self.logger.record(f"world_model/{prefix}reward_mse_h0", errors["reward_mse"])
            # Share of trajectories whose episode ends within the window: as predicted, and in the simulator.
            self.logger.record(f"world_model/{prefix}termination_rate", trajectory.dones[:, :-1].amax(dim=1).mean().item())
            self.logger.record(f"world_model/{prefix}true_termination_rate", errors["termination_rate"])
            if self._termination_rule is not None:  # the task's own rule on the imagined states
                rule_dones = self._termination_rule.trajectory_dones(trajectory.observations)
                self.logger.record(f"world_model/{prefix}rule_termination_rate", rule_dones[:, :-1].amax(dim=1).mean().item())

    # ----- SB3 plumbing -----------------------------------------------------------------------------------------------------

    def learn(
        self: SelfPolyGRAD,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "PolyGRAD",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPolyGRAD:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        self._open_loop_env = None
        self.imaginer = self._make_imagination()
        self._termination_rule = self._make_termination_rule()
        self._last_sim_states = None

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        SB3's ``save``, written to a temporary file beside ``path`` and renamed onto it (``common/atomic.py``): a run
        killed while saving keeps its previous checkpoint instead of a truncated zip.

        :param path: file to save to (``.zip`` is added to a path without a suffix), or an open stream
        :param exclude: attributes not to save, beyond the default ones
        :param include: attributes to save that are excluded by default
        """
        with atomic_path(path, suffix="zip") as temporary:
            super().save(temporary, exclude, include)

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """
        SB3's ``save_replay_buffer``, written atomically as ``save`` is.

        :param path: file to save to (``.pkl`` is added to a path without a suffix), or an open stream
        """
        with atomic_path(path, suffix="pkl") as temporary:
            super().save_replay_buffer(temporary)

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "actor",
            "critic",
            "critic_target",
            "learner",  # rebuilt by _setup_model from the attributes above
            "_open_loop_env",
            "imaginer",  # rebuilt by _setup_model; its guidance scale is the saved log_guidance_scale
            "_last_sim_states",
            "_window_gate",  # a loaded model counts the windows of its own buffer
            "_termination_rule",  # read off the env by _setup_model and set_env
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = [
            "policy",
            "actor.optimizer",
            "critic.optimizer",
            "world_model",
            "world_model_optimizer",
            "actor_lr.optimizer",
        ]
        return state_dicts, ["log_guidance_scale", "actor_lr.log_lr"]
