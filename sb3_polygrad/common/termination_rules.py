"""
The termination rules of Gymnasium's MuJoCo tasks, read off the env and applied to imagined observations
(``PolyGRAD(imagination_kwargs={"terminations": "env_rule"})``, ``imagination.RuleTerminations``), as MBPO applies its
tasks' known termination functions to model rollouts.

A task ends an episode when its observation leaves a healthy box: Hopper and Walker2d bound the torso's height and
angle, Ant and Humanoid its height, InvertedPendulum the pole's angle; HalfCheetah, Swimmer, Reacher and Pusher never
end one. The bounds are read from the env itself (``_healthy_z_range`` and the like), so an env made with other bounds,
with the x position kept in its observations, or with ``terminate_when_unhealthy=False`` gets its own rule.
``tests/test_termination_rules.py`` checks each rule against the simulator's own terminations.
"""

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.vec_env import VecEnv


@dataclass(frozen=True)
class HealthyBox:
    """
    One bound of a healthy state: ``low < obs[..., columns] < high`` for every column (``<=`` where ``inclusive``).

    :param columns: the observation columns bounded
    :param low: lower bound
    :param high: upper bound
    :param inclusive: whether the bounds themselves are healthy
    """

    columns: slice
    low: float
    high: float
    inclusive: bool = False

    def holds(self, observations: th.Tensor) -> th.Tensor:
        """:return: whether every bounded column of each observation lies in the box, shape ``observations.shape[:-1]``"""
        x = observations[..., self.columns]
        inside = (x >= self.low) & (x <= self.high) if self.inclusive else (x > self.low) & (x < self.high)
        return inside.all(dim=-1)


@dataclass(frozen=True)
class TerminationRule:
    """
    A task's termination rule as a function of the observation an env step returns.

    :param boxes: the bounds of a healthy state (none: the task never terminates)
    :param finite: whether a non-finite observation also terminates
    """

    boxes: tuple[HealthyBox, ...] = ()
    finite: bool = False

    def terminated(self, observations: th.Tensor) -> th.Tensor:
        """
        :param observations: observations, shape (..., O)
        :return: 1.0 where the step that returned the observation ends the episode, else 0.0, shape (...)
        """
        healthy = th.ones(observations.shape[:-1], dtype=th.bool, device=observations.device)
        for box in self.boxes:
            healthy &= box.holds(observations)
        if self.finite:
            healthy &= th.isfinite(observations).all(dim=-1)
        return (~healthy).float()

    def trajectory_dones(self, observations: th.Tensor) -> th.Tensor:
        """
        The terminal flags of trajectories under the rule, as the replay buffer's windows hold them.

        :param observations: states s_0..s_{H-1}, shape (B, H, O)
        :return: d_0..d_{H-1}, shape (B, H): d_k is 1 once a step up to k has led to an unhealthy state s_{j+1}, j <= k
            (d_{H-1}, whose next state the trajectory lacks, repeats d_{H-2})
        """
        ended = self.terminated(observations[:, 1:])  # the step k -> k+1 ends the episode
        ended = th.cat([ended, ended[:, -1:]], dim=1)
        return th.cummax(ended, dim=1).values


def _get(venv: VecEnv, name: str) -> Any:
    return venv.get_attr(name, indices=[0])[0]


def _position_offset(venv: VecEnv, dropped: int) -> int:
    """Columns by which the env's own kept x (and y) positions shift its observation, against the default layout."""
    return 0 if _get(venv, "_exclude_current_positions_from_observation") else dropped


def _box(venv: VecEnv, columns: slice, attribute: str, inclusive: bool = False) -> HealthyBox:
    """The box the env's ``(low, high)`` attribute draws on ``columns``."""
    low, high = _get(venv, attribute)
    return HealthyBox(columns, float(low), float(high), inclusive)


def _healthy_if(venv: VecEnv, rule: TerminationRule) -> TerminationRule:
    """``rule``, or the rule of a task that never terminates where the env was made with terminate_when_unhealthy=False."""
    return rule if _get(venv, "_terminate_when_unhealthy") else TerminationRule()


def _hopper(venv: VecEnv) -> TerminationRule:
    # Observations: qpos[1:] (x dropped), then qvel clipped at +-10. The env bounds z = qpos[1], the angle qpos[2], and
    # qpos[2:] with qvel by its state range (+-100, beyond the clipped velocities: only positions can leave it here).
    z = _position_offset(venv, 1)
    boxes = (
        _box(venv, slice(z, z + 1), "_healthy_z_range"),
        _box(venv, slice(z + 1, z + 2), "_healthy_angle_range"),
        _box(venv, slice(z + 1, None), "_healthy_state_range"),
    )
    return _healthy_if(venv, TerminationRule(boxes))


def _walker2d(venv: VecEnv) -> TerminationRule:
    z = _position_offset(venv, 1)
    boxes = (
        _box(venv, slice(z, z + 1), "_healthy_z_range"),
        _box(venv, slice(z + 1, z + 2), "_healthy_angle_range"),
    )
    return _healthy_if(venv, TerminationRule(boxes))


def _ant(venv: VecEnv) -> TerminationRule:
    # The env also ends on a non-finite simulator state; a non-finite observation is the closest the rule can see.
    z = _position_offset(venv, 2)
    box = _box(venv, slice(z, z + 1), "_healthy_z_range", inclusive=True)
    return _healthy_if(venv, TerminationRule((box,), finite=True))


def _humanoid(venv: VecEnv) -> TerminationRule:
    z = _position_offset(venv, 2)
    return _healthy_if(venv, TerminationRule((_box(venv, slice(z, z + 1), "_healthy_z_range"),)))


def _inverted_pendulum(venv: VecEnv) -> TerminationRule:
    return TerminationRule((HealthyBox(slice(1, 2), -0.2, 0.2, inclusive=True),), finite=True)


def _never(venv: VecEnv) -> TerminationRule:
    return TerminationRule()


# By the name of the task's registered id (``EnvSpec.name``: "Hopper" for "Hopper-v4").
RULES = {
    "Hopper": _hopper,
    "Walker2d": _walker2d,
    "Ant": _ant,
    "Humanoid": _humanoid,
    "InvertedPendulum": _inverted_pendulum,
    "HalfCheetah": _never,
    "Swimmer": _never,
    "Reacher": _never,
    "Pusher": _never,
}


def termination_rule(venv: VecEnv) -> TerminationRule | None:
    """
    The termination rule of the task ``venv`` runs.

    :param venv: a vectorised env
    :return: the rule, with the bounds of the env's own settings; None for an env without a registered id or a task
        not in ``RULES``
    """
    name = getattr(_get(venv, "spec"), "name", None)
    return RULES[name](venv) if name in RULES else None
