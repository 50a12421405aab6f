"""The two batch types that cross the world model's boundary: real windows in, imagined trajectories out.

Shape letters: ``B`` batch, ``H`` horizon, ``O`` obs dim, ``A`` action dim, ``S`` simulator-state size."""

from dataclasses import dataclass
from typing import NamedTuple

import torch as th


class WindowSamples(NamedTuple):
    """
    H consecutive real steps of one episode, padded after a termination (terminal 1, state held, reward 0).

    :param observations: s_0..s_{H-1}, the state in which each action was taken, shape (B, H, O)
    :param actions: a_0..a_{H-1} in the policy's units, shape (B, H, A)
    :param rewards: r_k returned by step(s_k, a_k), shape (B, H)
    :param terminals: d_k, 1 where the episode has terminated (not truncated), shape (B, H)
    :param sim_states: simulator state (MuJoCo qpos, qvel) at each row, shape (B, H, S); ``None`` where the env
        does not expose it
    """

    observations: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    terminals: th.Tensor
    sim_states: th.Tensor | None = None

    def as_trajectory(self) -> "ImaginedTrajectory":
        """The windows in the layout of imagined trajectories (their terminals as ``dones``), for what learns from both."""
        return ImaginedTrajectory(self.observations, self.actions, self.rewards, self.terminals)


@dataclass
class ImaginedTrajectory:
    """
    A batch of imagined trajectories in raw units.

    :param observations: states s_0..s_{H-1}, shape (B, H, O); s_0 is the real start state
    :param actions: actions a_0..a_{H-1} in the policy's units, shape (B, H, A)
    :param rewards: rewards r_0..r_{H-1}, shape (B, H)
    :param dones: terminal flags d_0..d_{H-1} thresholded at 0.5, shape (B, H)
    """

    observations: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
