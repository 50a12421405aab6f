"""
Fixed datasets of real transitions for the world-model experiments (the paper's world-model study, section 4.4).

A dataset is a directory with three files:

- ``transitions.npz``: flat arrays over N transitions, episodes stored one after the other in collection order

  ===================== ============ ========= ===========================================================================
  name                  shape        dtype     meaning
  ===================== ============ ========= ===========================================================================
  ``observations``      (N, O)       float32   s_k, the state in which the action was taken
  ``actions``           (N, A)       float32   a_k in SB3's scaled units ([-1, 1] spans the action space), *unclipped*:
                                               the env received ``clip(a_k, -1, 1)``, so a world model learns the clipping
  ``next_observations`` (N, O)       float32   s_{k+1} returned by the env
  ``rewards``           (N,)         float32   r_k returned by the env
  ``terminals``         (N,)         bool      the episode terminated at this step (not a time limit)
  ``timeouts``          (N,)         bool      the episode stopped here without terminating (time limit, or the end of
                                               collection); every episode ends with a terminal or a timeout
  ``sim_states``        (N, S)       float64   MuJoCo ``[qpos, qvel]`` before the step (``env.unwrapped.state_vector()``);
                                               absent for envs without a simulator state
  ===================== ============ ========= ===========================================================================

- ``metadata.json``: ``format_version``, ``env_id``, ``n_transitions``, ``n_episodes`` and how the data were made
  (agent, training steps, seed, the behaviour policy's ``min_std``).
- ``policy.zip`` (optional): the SB3 agent whose policy generated the data, loaded with ``SACGaussianPolicy.load``.

Datasets saved by the reference implementation (marc-rigter/polygrad-world-models, a pickled dict of arrays) load with
``TransitionDataset.from_reference``; ``to_replay_buffer`` turns any dataset into the replay buffer PolyGRAD trains from,
so every world model sees the same window sampler.
"""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC

from sb3_polygrad.buffers import PolyGRADReplayBuffer
from sb3_polygrad.common.simulator import supports_sim_state, to_env_actions

FORMAT_VERSION = 1
ARRAY_NAMES = ("observations", "actions", "next_observations", "rewards", "terminals", "timeouts", "sim_states")


@dataclass
class TransitionDataset:
    """
    Real transitions, episode after episode, with the simulator state before each step (file format: module docstring).

    :param observations: s_k, shape (N, O)
    :param actions: a_k in scaled units, unclipped, shape (N, A)
    :param next_observations: s_{k+1}, shape (N, O)
    :param rewards: r_k, shape (N,)
    :param terminals: termination flags, shape (N,)
    :param timeouts: flags of episodes that stop without terminating, shape (N,)
    :param sim_states: simulator state before each step, shape (N, S), or ``None``
    :param metadata: JSON-serialisable description (``env_id`` at least, to replay actions in the simulator)
    """

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    sim_states: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.terminals = np.asarray(self.terminals).reshape(-1) > 0
        self.timeouts = np.asarray(self.timeouts).reshape(-1) > 0
        if self.sim_states is not None:
            self.sim_states = np.asarray(self.sim_states, dtype=np.float64)
        n = len(self.observations)
        for name in ARRAY_NAMES:
            array = getattr(self, name)
            if array is not None and len(array) != n:
                raise ValueError(f"{name} holds {len(array)} transitions, observations hold {n}")
        if self.next_observations.shape != self.observations.shape or self.actions.ndim != 2:
            raise ValueError("observations and next_observations must be (N, O) and actions (N, A)")
        if n > 0 and not (self.terminals[-1] or self.timeouts[-1]):
            raise ValueError("the last transition must end its episode (terminal or timeout)")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def episode_ends(self) -> np.ndarray:
        """Index of the last transition of each episode, shape (n_episodes,)."""
        return np.flatnonzero(self.terminals | self.timeouts)

    def select_episodes(self, episodes: np.ndarray) -> "TransitionDataset":
        """
        :param episodes: indices of episodes to keep, in the order to store them
        :return: a dataset of those episodes (same metadata)
        """
        ends = self.episode_ends
        starts = np.concatenate([[0], ends[:-1] + 1])
        rows = np.concatenate([np.arange(starts[e], ends[e] + 1) for e in episodes]) if len(episodes) else np.arange(0)
        arrays: dict[str, Any] = {
            name: None if getattr(self, name) is None else getattr(self, name)[rows] for name in ARRAY_NAMES
        }
        return replace(self, **arrays, metadata=dict(self.metadata))

    def split(self, validation_fraction: float, seed: int = 0) -> tuple["TransitionDataset", "TransitionDataset"]:
        """
        Split by whole episodes, so that no window of the validation set was seen in training.

        :param validation_fraction: share of the episodes held out
        :param seed: seed of the random assignment
        :return: training and validation datasets
        """
        n_episodes = len(self.episode_ends)
        n_val = max(1, round(validation_fraction * n_episodes))
        if not 0 < validation_fraction < 1 or n_val >= n_episodes:
            raise ValueError(f"cannot hold out {validation_fraction} of {n_episodes} episodes")
        order = np.random.default_rng(seed).permutation(n_episodes)
        return self.select_episodes(np.sort(order[n_val:])), self.select_episodes(np.sort(order[:n_val]))

    def save(self, directory: str | Path) -> None:
        """:param directory: where to write ``transitions.npz`` and ``metadata.json`` (created if missing)"""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in ARRAY_NAMES if getattr(self, name) is not None}
        np.savez_compressed(path / "transitions.npz", **arrays)
        metadata = {
            **self.metadata,
            "format_version": FORMAT_VERSION,
            "n_transitions": len(self),
            "n_episodes": len(self.episode_ends),
        }
        (path / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "TransitionDataset":
        """:param directory: a directory written by ``save``
        :return: the dataset"""
        path = Path(directory)
        metadata = json.loads((path / "metadata.json").read_text())
        if metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} holds dataset format {metadata.get('format_version')}, this code reads {FORMAT_VERSION}")
        with np.load(path / "transitions.npz") as data:
            arrays: dict[str, Any] = {name: data[name] if name in data else None for name in ARRAY_NAMES}
        return cls(**arrays, metadata=metadata)

    @classmethod
    def from_reference(cls, path: str | Path, env_id: str | None = None) -> "TransitionDataset":
        """
        Load a dataset saved by the reference implementation: ``np.save`` of a dict of arrays, either per episode
        (``(n_episodes, max_len, dim)`` with ``path_lengths``, as its ``step-*-dataset.npy`` files) or flat ``(N, dim)``.

        Keys: ``observations``, ``actions``, ``next_observations``, ``rewards``, ``terminals``, optional ``timeouts`` and
        ``sim_states``. An episode that neither terminates nor is marked as a timeout is closed with a timeout, and so is a
        flat episode whose next observation is not the following row's observation.

        :param path: a ``.npy`` (pickled dict) or ``.npz`` file
        :param env_id: the env the data come from; its action bounds rescale the stored (env-unit) actions to [-1, 1]
        :return: the dataset
        """
        loaded = np.load(path, allow_pickle=True)
        data: dict[str, np.ndarray] = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else loaded.item()
        if "path_lengths" in data:
            lengths = np.asarray(data["path_lengths"], dtype=int)
            # (n_episodes, max_len, ...) -> (N, ...), dropping each episode's padding
            data = {
                key: np.concatenate([np.asarray(data[key])[i, :length] for i, length in enumerate(lengths)])
                for key in ARRAY_NAMES
                if key in data
            }
        terminals = np.asarray(data["terminals"]).reshape(-1) > 0
        timeouts = np.asarray(data.get("timeouts", np.zeros_like(terminals))).reshape(-1) > 0
        observations, next_observations = np.asarray(data["observations"]), np.asarray(data["next_observations"])
        # Episode cuts that no flag marks: the next row does not continue from this row's next observation.
        cut = np.append(np.any(next_observations[:-1] != observations[1:], axis=-1), True)
        timeouts |= cut & ~terminals
        actions = np.asarray(data["actions"], dtype=np.float32).reshape(len(terminals), -1)
        if env_id is not None:
            space = gym.make(env_id).action_space
            assert isinstance(space, spaces.Box)
            actions = 2.0 * (actions - space.low) / (space.high - space.low) - 1.0
        return cls(
            observations,
            actions,
            next_observations,
            np.asarray(data["rewards"]),
            terminals,
            timeouts,
            data.get("sim_states"),
            metadata={"env_id": env_id, "source": f"reference dataset {Path(path).name}"},
        )

    def to_replay_buffer(self, device: th.device | str = "cpu") -> PolyGRADReplayBuffer:
        """
        The transitions in a ``PolyGRADReplayBuffer`` of exactly their size, so that ``sample_windows`` draws H-step
        windows (padded after terminations, never across timeouts) as it does for PolyGRAD.

        :param device: device of the sampled tensors
        :return: the buffer
        """
        obs_dim, action_dim = self.observations.shape[1], self.actions.shape[1]
        buffer = PolyGRADReplayBuffer(
            max(len(self), 1),
            spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            spaces.Box(-1.0, 1.0, (action_dim,), np.float32),
            device=device,
        )
        for i in range(len(self)):
            info: dict[str, Any] = {"TimeLimit.truncated": bool(self.timeouts[i] and not self.terminals[i])}
            if self.sim_states is not None:
                info["sim_state"] = self.sim_states[i]
            buffer.add(
                self.observations[i : i + 1],
                self.next_observations[i : i + 1],
                self.actions[i : i + 1],
                self.rewards[i : i + 1],
                np.array([self.terminals[i] or self.timeouts[i]]),
                [info],
            )
        return buffer

    def tensors(self, device: th.device | str = "cpu") -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """:param device: device of the tensors
        :return: observations (N, O), actions (N, A), rewards (N,) and terminals (N,) as float32 tensors, the real data
            a world model's normaliser is fitted on"""
        return (
            th.as_tensor(self.observations, device=device),
            th.as_tensor(self.actions, device=device),
            th.as_tensor(self.rewards, device=device),
            th.as_tensor(self.terminals, dtype=th.float32, device=device),
        )


class SACGaussianPolicy:
    """
    An SB3 ``SAC`` agent's policy as a diagonal Gaussian in scaled action units, the form PolyGRAD's guidance needs
    (``GuidancePolicy``).

    SAC acts with ``a = tanh(u)``, ``u ~ N(m(s), s(s)^2)``. PolyGRAD guides with the gradient of a Gaussian log-likelihood,
    so this wrapper takes the first-order (delta-method) Gaussian approximation of the squashed distribution:
    mean ``tanh(m)`` and std ``(1 - tanh(m)^2) s``, floored at ``min_std``. The floor matters twice: near saturation
    the linearised std goes to zero, which would make the guidance gradient ``(mu - a) / sigma^2`` explode, and PolyGRAD's
    own policies keep the same floor (0.1). The wrapper *is* the behaviour policy of the datasets made with it
    (``collect_transitions`` samples from this Gaussian, not from SAC), so the world models are evaluated under exactly
    the policy that generated their data.

    :param agent: a trained SB3 ``SAC`` model
    :param min_std: floor of the standard deviation, in scaled action units
    """

    def __init__(self, agent: SAC, min_std: float = 0.1) -> None:
        if min_std <= 0:
            raise ValueError(f"min_std must be > 0, got {min_std}")
        self.agent = agent
        self.min_std = min_std
        self.obs_dim = int(np.prod(agent.observation_space.shape))  # type: ignore[arg-type]

    def action_distribution_params(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:param observations: raw observations, shape (..., O)
        :return: mean and std of the actions in scaled units, each shape (..., A)"""
        lead = observations.shape[:-1]
        # SB3's feature extractor flattens every dimension after the first: give it (N, O) rows.
        flat = observations.reshape(-1, self.obs_dim).to(self.agent.device)  # (N, O)
        mean_u, log_std_u, _ = self.agent.actor.get_action_dist_params(flat)
        mean = th.tanh(mean_u)
        std = ((1.0 - mean.square()) * log_std_u.exp()).clamp(min=self.min_std)
        return mean.reshape(*lead, -1).to(observations.device), std.reshape(*lead, -1).to(observations.device)

    def save(self, path: str | Path) -> None:
        """:param path: ``.zip`` file of the SB3 agent (``min_std`` is kept in the dataset's metadata)"""
        self.agent.save(path)

    @classmethod
    def load(cls, path: str | Path, min_std: float = 0.1, device: th.device | str = "auto") -> "SACGaussianPolicy":
        """:param path: an SB3 ``SAC`` ``.zip``
        :param min_std: floor of the standard deviation (the value the data were collected with)
        :param device: device of the policy network
        :return: the wrapped policy"""
        return cls(SAC.load(path, device=device), min_std)


def train_sac(
    env_id: str, total_timesteps: int, seed: int = 0, sac_kwargs: dict[str, Any] | None = None, device: str = "auto"
) -> SAC:
    """
    Train an SB3 SAC agent, the source of a dataset's policy.

    :param env_id: gymnasium id of the env
    :param total_timesteps: env steps of training
    :param seed: seed of the agent and env
    :param sac_kwargs: further ``SAC`` arguments (``policy_kwargs``, ``learning_starts``, ...)
    :param device: device of the agent
    :return: the trained agent
    """
    agent = SAC("MlpPolicy", env_id, seed=seed, device=device, **(sac_kwargs or {}))
    return agent.learn(total_timesteps)


def collect_transitions(env_id: str, policy: SACGaussianPolicy, n_steps: int, seed: int = 0) -> TransitionDataset:
    """
    Roll out a policy's Gaussian samples in the env and record every transition with the simulator state before it.

    The unclipped sample is recorded and the env receives it clipped (as PolyGRAD stores its own data, section 2.3). The
    last episode is closed with a timeout when collection stops inside it.

    :param env_id: gymnasium id of a MuJoCo env
    :param policy: the behaviour policy
    :param n_steps: number of transitions
    :param seed: seed of the env and of the action noise
    :return: the dataset (metadata: ``env_id``, ``seed``, ``policy_min_std``)
    """
    env = gym.make(env_id)
    space = env.action_space
    assert isinstance(space, spaces.Box)
    if not supports_sim_state(env):
        raise ValueError(f"{env_id} exposes no simulator state: the open-loop metric cannot replay it")
    unwrapped: Any = env.unwrapped
    generator = th.Generator().manual_seed(seed)
    records: dict[str, list[Any]] = {name: [] for name in ARRAY_NAMES}
    obs, _ = env.reset(seed=seed)
    for _ in range(n_steps):
        sim_state = unwrapped.state_vector().copy()
        with th.no_grad():
            mean, std = policy.action_distribution_params(th.as_tensor(obs, dtype=th.float32).unsqueeze(0))
            action = (mean + std * th.randn(mean.shape, generator=generator)).squeeze(0).cpu().numpy()
        next_obs, reward, terminated, truncated, _ = env.step(to_env_actions(action, space.low, space.high))
        for name, value in zip(ARRAY_NAMES, (obs, action, next_obs, reward, terminated, truncated, sim_state), strict=True):
            records[name].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    records["timeouts"][-1] = records["timeouts"][-1] or not records["terminals"][-1]
    metadata = {"env_id": env_id, "seed": seed, "policy_min_std": policy.min_std}
    return TransitionDataset(**{name: np.array(values) for name, values in records.items()}, metadata=metadata)


def episode_returns(dataset: TransitionDataset) -> np.ndarray:
    """:param dataset: a dataset
    :return: the undiscounted return of each episode, shape (n_episodes,)"""
    ends = dataset.episode_ends
    if len(ends) == 0:
        return np.zeros(0)
    return np.add.reduceat(dataset.rewards.astype(np.float64), np.concatenate([[0], ends[:-1] + 1]))
