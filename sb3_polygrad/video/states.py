"""From observations back to MuJoCo states, and open-loop replays that keep the true states, to draw trajectories.

Shape letters: ``T`` steps, ``O`` obs dim, ``S`` simulator-state size (``nq + nv``), ``A`` action dim, ``K`` root
coordinates the observation leaves out."""

from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_polygrad.common.simulator import set_sim_state, supports_sim_state

# Locomotion tasks leave out at most the root's x, y (and z) position; a larger gap means the layout is something else.
_MAX_SKIPPED_QPOS = 3


class StateRollout(NamedTuple):
    """
    A trajectory as simulator states, ready to draw.

    :param sim_states: ``[qpos, qvel]`` of s_0..s_T, shape (T + 1, S)
    :param rewards: r_0..r_{T-1}, shape (T,)
    :param terminated: whether the episode has ended by s_{k+1}, shape (T,); states after the end are held
    """

    sim_states: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray


@dataclass(frozen=True)
class ObservationLayout:
    """
    Where MuJoCo's state sits in an env's observation: ``obs[:nq - skipped_qpos]`` is ``qpos[skipped_qpos:]`` and the
    next ``nv`` entries are ``qvel``; anything after (e.g. Ant's contact forces) is not needed to draw the body.

    The skipped coordinates are the root's position along x (and y), which locomotion tasks leave out of the observation
    (``exclude_current_positions_from_observation=True``). Their velocities are ``qvel[:skipped_qpos]`` (a slide joint, or
    a free joint's linear part), so they are rebuilt by integrating those velocities from a known start state.

    :param nq: size of ``qpos``
    :param nv: size of ``qvel``
    :param skipped_qpos: leading ``qpos`` coordinates missing from the observation
    :param dt: seconds per env step
    """

    nq: int
    nv: int
    skipped_qpos: int
    dt: float

    @classmethod
    def from_env(cls, env: gym.Env) -> "ObservationLayout":
        """
        Read the layout from what the env exposes: gymnasium's ``observation_structure`` (MuJoCo v5 envs), else the
        ``exclude_current_positions_from_observation`` flag and the sizes (v4 envs), else ``obs == [qpos, qvel]``.

        :param env: a MuJoCo env with a flat observation
        :return: the layout
        :raises ValueError: when the observation is not ``[qpos[k:], qvel, ...]`` as far as the env tells
        """
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        if not supports_sim_state(env) or not isinstance(env.observation_space, spaces.Box):
            raise ValueError(f"{name} is not a MuJoCo env with a Box observation: its trajectories cannot be drawn")
        unwrapped: Any = env.unwrapped
        nq, nv, obs_dim = int(unwrapped.model.nq), int(unwrapped.model.nv), int(np.prod(env.observation_space.shape))
        structure = getattr(unwrapped, "observation_structure", None)
        if structure is not None:
            skipped = int(structure.get("skipped_qpos", 0))
            found = skipped + structure.get("qpos", -1) == nq and structure.get("qvel", -1) == nv
        elif getattr(unwrapped, "_exclude_current_positions_from_observation", False):
            skipped = nq + nv - obs_dim
            found = 0 < skipped <= min(_MAX_SKIPPED_QPOS, nv)
        else:
            skipped, found = 0, obs_dim == nq + nv
        if not found:
            raise ValueError(
                f"Cannot map {name}'s observations ({obs_dim} values) to MuJoCo states (nq={nq}, nv={nv}): drawing needs an "
                "observation that starts with qpos (less the root's position) followed by qvel, as in Hopper, Walker2d, "
                "HalfCheetah, Swimmer, Ant and InvertedPendulum"
            )
        return cls(nq=nq, nv=nv, skipped_qpos=skipped, dt=float(unwrapped.dt))

    def to_sim_states(self, observations: np.ndarray, start_sim_state: np.ndarray) -> np.ndarray:
        """
        Simulator states of a trajectory of observations.

        :param observations: s_0..s_T, shape (T + 1, O)
        :param start_sim_state: the true ``[qpos, qvel]`` of s_0, shape (S,), which gives the skipped coordinates' start
        :return: ``[qpos, qvel]`` of each step, shape (T + 1, S)
        """
        n_qpos_obs = self.nq - self.skipped_qpos
        qpos_tail = observations[:, :n_qpos_obs]  # (T + 1, nq - K)
        qvel = observations[:, n_qpos_obs : n_qpos_obs + self.nv]  # (T + 1, nv)
        root_vel = qvel[:, : self.skipped_qpos]  # (T + 1, K)
        # Trapezoidal rule between steps; the observed velocity is an end-of-step sample of a frame-skipped integration.
        steps = 0.5 * self.dt * (root_vel[1:] + root_vel[:-1])  # (T, K)
        offsets = np.concatenate([np.zeros((1, self.skipped_qpos)), np.cumsum(steps, axis=0)])  # (T + 1, K)
        root = start_sim_state[: self.skipped_qpos] + offsets
        return np.concatenate([root, qpos_tail, qvel], axis=1)


def replay_states(env: gym.Env, start_sim_state: np.ndarray, actions: np.ndarray) -> StateRollout:
    """
    Replay env actions open loop from a simulator state, keeping the true states (the world model's real counterpart).

    :param env: a MuJoCo env (reset at least once)
    :param start_sim_state: ``[qpos, qvel]`` of s_0, shape (S,)
    :param actions: env actions (not scaled), shape (T, A)
    :return: the states s_0..s_T, held after a termination, with their rewards and termination flags
    """
    unwrapped: Any = env.unwrapped
    set_sim_state(env, start_sim_state)
    states, rewards, terminated = [np.asarray(start_sim_state, dtype=np.float64)], [], []
    for action in actions:
        _, reward, done, _, _ = unwrapped.step(action)
        states.append(unwrapped.state_vector())
        rewards.append(float(reward))
        terminated.append(bool(done))
        if done:
            break
    pad = len(actions) - len(rewards)
    return StateRollout(
        sim_states=np.stack(states + [states[-1]] * pad),
        rewards=np.array(rewards + [0.0] * pad),
        terminated=np.array(terminated + [True] * pad),
    )


def hold_after_termination(rollout: StateRollout) -> StateRollout:
    """
    Freeze a rollout at its first termination: later states repeat the terminal one, later rewards are 0.

    :param rollout: a rollout whose states may go on after the episode ended (e.g. imagined padding)
    :return: the held rollout
    """
    ended = np.flatnonzero(rollout.terminated)
    if len(ended) == 0:
        return rollout
    end = int(ended[0])
    sim_states = rollout.sim_states.copy()
    sim_states[end + 2 :] = sim_states[end + 1]
    rewards = rollout.rewards.copy()
    rewards[end + 1 :] = 0.0
    terminated = np.arange(len(rollout.terminated)) >= end
    return StateRollout(sim_states, rewards, terminated)
