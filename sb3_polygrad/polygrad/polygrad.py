"""PolyGRAD: policy-guided trajectory diffusion world models, as a Stable-Baselines3 algorithm."""

import warnings
from typing import Any, ClassVar, TypeVar

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
from sb3_polygrad.common.atomic import AtomicSaves
from sb3_polygrad.imagination import Imagination, ImaginationName, ImaginationSetup
from sb3_polygrad.polygrad.actor_critic import ActorCriticConfig, AdaptiveLearningRate, ImaginedActorCritic
from sb3_polygrad.polygrad.arguments import check_arguments, refuse_moved_arguments
from sb3_polygrad.polygrad.device_advice import warn_if_paper_sized_on_cpu
from sb3_polygrad.polygrad.env_outputs import check_step, refuse_non_finite
from sb3_polygrad.polygrad.policies import Actor, MlpPolicy, PolyGRADPolicy
from sb3_polygrad.polygrad.window_gate import WindowGate
from sb3_polygrad.world_model.sampler import standardized_action_stats
from sb3_polygrad.world_model.training import world_model_update
from sb3_polygrad.world_model.types import ImaginedTrajectory
from sb3_polygrad.world_model.world_model import DenoiserName, DiffusionWorldModel

SelfPolyGRAD = TypeVar("SelfPolyGRAD", bound="PolyGRAD")


class PolyGRAD(AtomicSaves, OffPolicyAlgorithm):
    """
    PolyGRAD: World Models via Policy-Guided Trajectory Diffusion (Rigter, Yamada & Posner, TMLR 2024).

    Paper: https://arxiv.org/abs/2312.08533 -- reference code: https://github.com/marc-rigter/polygrad-world-models

    Real steps fill a replay buffer; every ``train_freq`` steps a diffusion world model takes ``gradient_steps`` updates
    on real H-step windows, then (after ``world_model_warmup`` more steps) it imagines ``imagination_batch_size``
    on-policy trajectories from real start states with the policy-guided sampler, and the actor-critic takes one step on
    them. The defaults are the paper's (section 4.1), except that ``learning_starts`` random steps
    are counted in ``num_timesteps`` (the reference does not count its 5000 prefill steps). ``save`` writes whole files
    or none (``common/atomic.py``). The world model's open-loop error against the simulator is logged by
    ``callbacks.WorldModelEvaluationCallback``, where a run asks for it.

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
    :param ent_coef: entropy bonus weight
    :param train_freq: train every ``train_freq`` env steps (per env), or a tuple ``(n, "step" | "episode")``
    :param gradient_steps: world-model updates per training call
    :param agent_gradient_steps: imagine-then-update rounds of the actor-critic per training call
    :param imagination_epochs: actor-critic steps on each imagined batch (1: the paper's, one step per imagination).
        This package's extension: imagination is most of a training call's cost, and a batch imagined for the policy
        of one step is still close to on-policy one or two steps later (each step moves ``log pi`` by about
        ``target_policy_update``), as PPO reuses its rollouts for ``n_epochs``
    :param world_model_warmup: env steps after ``learning_starts`` in which only the world model trains
    :param horizon: H, length of the diffused (and imagined) trajectories
    :param denoiser: ``"mlp"`` (residual MLP, the paper's), ``"causal_mlp"`` (the same, masked so that no state sees the
        actions that follow it: imagination that obeys the dynamics, ``world_model/causal_mlp.py``) or ``"transformer"``
    :param n_diffusion_steps: N, diffusion steps of the world model
    :param noise_schedule_tau: temperature of the cosine noise schedule (paper: 0.1 for Hopper, else 1.0)
    :param n_sampling_steps: denoising steps of imagination, strided over N (``None``: all N, as the paper)
    :param imagination: where the actor-critic's trajectories come from, a name of ``imagination.IMAGINATIONS`` or an
        ``imagination.Imagination`` subclass: ``"guided"``, the paper's policy-guided sampler; ``"closed_loop"``, this
        package's extension in which every imagined action is the policy's own sample at the state it is taken in
        (needs ``denoiser="causal_mlp"``); ``"sequential"`` and ``"simulator"``, diagnostics
    :param imagination_kwargs: the options of imagination: ``start_window`` and ``terminations`` for every method
        (``imagination.ImaginationSetup``), and the method's own (``GuidedOptions``, ``ClosedLoopOptions``,
        ``StateClipOptions`` for ``"sequential"``, ``SimulatorOptions``)
    :param actor_critic_kwargs: the options of the actor-critic: the fields of ``polygrad.actor_critic.ActorCriticConfig``
        but ``gamma``, ``gae_lambda`` and ``ent_coef`` (``reward_scale``, ``target_policy_update``, ...)
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
    imaginer: Imagination

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
        ent_coef: float = 1e-5,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 4,
        agent_gradient_steps: int = 1,
        imagination_epochs: int = 1,
        world_model_warmup: int = 1000,
        horizon: int = 10,
        denoiser: DenoiserName = "mlp",
        n_diffusion_steps: int = 128,
        noise_schedule_tau: float = 1.0,
        n_sampling_steps: int | None = None,
        imagination: ImaginationName | type[Imagination] = "guided",
        imagination_kwargs: dict[str, Any] | None = None,
        actor_critic_kwargs: dict[str, Any] | None = None,
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
        self.ent_coef = ent_coef
        self.agent_gradient_steps = agent_gradient_steps
        self.imagination_epochs = imagination_epochs
        self.world_model_warmup = world_model_warmup
        self.horizon = horizon
        self.denoiser = denoiser
        self.n_diffusion_steps = n_diffusion_steps
        self.noise_schedule_tau = noise_schedule_tau
        self.n_sampling_steps = n_sampling_steps
        self.imagination = imagination
        self.imagination_kwargs = dict(imagination_kwargs or {})
        self.actor_critic_kwargs = dict(actor_critic_kwargs or {})
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
        spec = self.env.get_attr("spec")[0] if self.env is not None else None
        max_steps = spec.max_episode_steps if spec is not None else None
        if max_steps is not None and self.horizon >= max_steps:
            warnings.warn(f"horizon {self.horizon} is not shorter than the episode limit {max_steps}: few windows exist")
        if self.imagination_batch_size < 64:
            warnings.warn(f"imagination_batch_size={self.imagination_batch_size} makes noisy actor-critic steps")

    def _setup_model(self) -> None:
        # The components' options are read here, not in _check_arguments: load() restores them after the constructor.
        refuse_moved_arguments(vars(self))
        config = self.actor_critic_config()
        self._imagination_setup = ImaginationSetup.parse(self.imagination, self.imagination_kwargs)
        if self.env is not None and (window := self._imagination_setup.start_window) is not None:
            PolyGRADReplayBuffer.check_newest("imagination_kwargs['start_window']", window, self.horizon, self.n_envs)
        if self.replay_buffer_class is None:
            self.replay_buffer_class = PolyGRADReplayBuffer
        if not issubclass(self.replay_buffer_class, PolyGRADReplayBuffer):
            raise ValueError("PolyGRAD samples H-step windows: replay_buffer_class must subclass PolyGRADReplayBuffer")
        super()._setup_model()
        self._create_aliases()
        if config.action_std_schedule is not None and min(config.action_std_schedule) <= self.actor.min_std:
            raise ValueError(
                f"actor_critic_kwargs['action_std_schedule'] {config.action_std_schedule} must stay above the policy's "
                f"min_std ({self.actor.min_std})"
            )
        self._schedule_action_std()
        obs_dim, action_dim = self.observation_space.shape[0], self.action_space.shape[0]  # type: ignore[index]
        self.world_model = DiffusionWorldModel(
            obs_dim,
            action_dim,
            horizon=self.horizon,
            denoiser=self.denoiser,
            n_diffusion_steps=self.n_diffusion_steps,
            noise_schedule_tau=self.noise_schedule_tau,
            n_sampling_steps=self.n_sampling_steps,
            **self._imagination_setup.world_model_kwargs(self.denoiser, self.world_model_kwargs),
        ).to(self.device)
        warn_if_paper_sized_on_cpu(self.device, self.world_model.denoiser)
        self.world_model_optimizer = th.optim.Adam(self.world_model.denoiser.parameters(), lr=self.world_model_learning_rate)
        self.actor_lr = AdaptiveLearningRate(self.lr_schedule(1.0), config.actor_lr_learning_rate, self.device)
        self.learner = ImaginedActorCritic(self.policy)
        self.imaginer = self._imagination_setup.build(self)
        self._last_sim_states: np.ndarray | None = None
        self._window_gate = WindowGate()

    @property
    def log_guidance_scale(self) -> th.Tensor | None:
        """``log g``, the guidance scale the imagination method tunes (saved with the model); None where it has none."""
        return self.imaginer.log_guidance_scale

    def _schedule_action_std(self) -> None:
        """Set the policy's std to ``action_std_schedule``'s value at the current progress (no-op without one)."""
        schedule = self.actor_critic_config().action_std_schedule
        if schedule is None:
            return
        initial, final = schedule
        progress = min(max(self._current_progress_remaining, 0.0), 1.0)  # 1 at the start of the budget, 0 at its end
        self.actor.fix_std(final + (initial - final) * progress)

    def actor_critic_config(self) -> ActorCriticConfig:
        """:return: the actor-critic's options from ``gamma``, ``gae_lambda``, ``ent_coef``, ``actor_critic_kwargs`` now"""
        return ActorCriticConfig.from_kwargs(self.gamma, self.gae_lambda, self.ent_coef, self.actor_critic_kwargs)

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
                    self.imagination_batch_size, self.horizon, newest=self._imagination_setup.start_window
                )
                trajectory = self.imaginer.imagine(start)
                self._record_imagination(trajectory)
                real = start.as_trajectory()  # the real windows too, for a critic that also learns from them
                for _ in range(self.imagination_epochs):
                    self._train_actor_critic(trajectory, real)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def imagine(self, obs0: th.Tensor, generator: th.Generator | None = None) -> ImaginedTrajectory:
        """
        Trajectories from given start states, imagined as the actor-critic's are (``Imagination.imagine_from``).

        :param obs0: raw start states, shape (B, O), on the model's device
        :param generator: random generator for reproducible samples
        :return: trajectories of ``horizon`` steps, in raw units
        """
        return self.imaginer.imagine_from(obs0, generator)

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

    def _train_actor_critic(self, trajectory: ImaginedTrajectory, real: ImaginedTrajectory | None = None) -> None:
        config = self.actor_critic_config()
        max_lr = self.lr_schedule(self._current_progress_remaining)
        actor_lr = min(self.actor_lr.value, max_lr) if config.adaptive_actor_lr else max_lr
        # The target critic moves before the targets are computed, as in the reference.
        with th.no_grad():
            th._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), self.tau)
        stats = self.learner.step(trajectory, config, actor_lr, max_lr, real)
        if config.adaptive_actor_lr:
            self.actor_lr.update(stats.initial_update_size, config.target_policy_update, max_lr)
        self._n_updates += 1
        for name, value in stats.logged().items():
            self.logger.record(f"train/{name}", value)
        self.logger.record("train/std", self.actor.std().mean().item())
        self.logger.record("train/learning_rate", max_lr)  # the schedule's cap; the line search sets the actual rate

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
        self.imaginer.set_env(self.env)  # a method that cannot run with the new env raises here
        self._last_sim_states = None

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "actor",
            "critic",
            "critic_target",
            "learner",  # rebuilt by _setup_model from the attributes above
            "_imagination_setup",  # read again from imagination and imagination_kwargs by _setup_model
            "imaginer",  # rebuilt by _setup_model; its guidance scale is the saved log_guidance_scale
            "_last_sim_states",
            "_window_gate",  # a loaded model counts the windows of its own buffer
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
