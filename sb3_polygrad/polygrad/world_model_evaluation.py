"""The open-loop error of a PolyGRAD model's imagination against the simulator, the ``world_model/*`` figures of
``WorldModelEvaluationCallback`` (``docs/logged_metrics.md``)."""

from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch as th

from sb3_polygrad.common.simulator import open_loop_errors
from sb3_polygrad.common.termination_rules import TerminationRule

if TYPE_CHECKING:
    from sb3_polygrad.polygrad.polygrad import PolyGRAD


def world_model_errors(
    model: "PolyGRAD", env: gym.Env, n_trajectories: int, rule: TerminationRule | None = None
) -> dict[str, float]:
    """
    Imagine from recorded start states of the replay buffer as the model's imagination method does (for
    ``"simulator"``, the world-model imagination it stands in for, with its own terminal flags), and with the recorded
    actions; replay both in the simulator from the recorded states, and compare.

    Its random numbers come from generators of its own, seeded by the model's seed and step: measuring leaves the
    training run it measures unchanged.

    :param model: a PolyGRAD model whose replay buffer holds simulator states
    :param env: a MuJoCo env of the model's task (``common.simulator.make_simulator_env``)
    :param n_trajectories: trajectories imagined and replayed
    :param rule: the task's termination rule, whose rate on the imagined states is reported too (``None``: not known)
    :return: the figures by their logger key, ``world_model/...``
    """
    rng = np.random.default_rng(None if model.seed is None else [model.seed, model.num_timesteps])
    generator = th.Generator(device=model.device).manual_seed(int(rng.integers(2**62)))
    batch = model.replay_buffer.sample_windows(n_trajectories, model.horizon, rng)
    assert batch.sim_states is not None
    start_sim_states = batch.sim_states[:, 0].cpu().numpy()
    imagined = model.imaginer.world_model_imagination().imagine(batch, generator)
    # The same start states with the recorded actions: the gap between the two errors is what guidance costs. A
    # denoiser of whole windows reads states off the actions that follow them (in the data the behaviour policy chose
    # them from those states), so guided actions can pull imagined states away from the states they lead to.
    with_data_actions = model.world_model.sample_with_actions(batch.observations[:, 0], batch.actions, generator)
    space = model.action_space
    assert isinstance(space, gym.spaces.Box)  # PolyGRAD refuses other action spaces
    figures: dict[str, float] = {}
    for prefix, trajectory in (("", imagined), ("data_actions_", with_data_actions)):
        errors = open_loop_errors(env, trajectory, start_sim_states, space.low, space.high)
        state_mse = errors["state_mse"]
        assert isinstance(state_mse, np.ndarray)
        for k in sorted({1, 5, 10, model.horizon - 1}):
            if k < model.horizon:
                figures[f"world_model/{prefix}state_mse_h{k}"] = float(state_mse[k])
        figures[f"world_model/{prefix}reward_mse_h0"] = float(errors["reward_mse"])
        # Share of trajectories whose episode ends within the window: as predicted, and in the simulator.
        figures[f"world_model/{prefix}termination_rate"] = trajectory.dones[:, :-1].amax(dim=1).mean().item()
        figures[f"world_model/{prefix}true_termination_rate"] = float(errors["termination_rate"])
        if rule is not None:  # the task's own rule on the imagined states
            rule_dones = rule.trajectory_dones(trajectory.observations)
            figures[f"world_model/{prefix}rule_termination_rate"] = rule_dones[:, :-1].amax(dim=1).mean().item()
    return figures
