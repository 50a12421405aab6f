import gymnasium as gym
import numpy as np
import torch as th

from sb3_polygrad.common.simulator import (
    open_loop_errors,
    replay_actions,
    simulator_rollouts,
    supports_sim_state,
    to_env_actions,
)
from sb3_polygrad.world_model.types import ImaginedTrajectory


def simulator_trajectory(env: gym.Env, horizon: int, seed: int) -> tuple[ImaginedTrajectory, np.ndarray]:
    """A 'model' that returns the simulator's own trajectory, with actions in scaled units."""
    rng = np.random.default_rng(seed)
    obs0, _ = env.reset(seed=seed)
    sim_state = env.unwrapped.state_vector().copy()
    actions = rng.uniform(-1, 1, size=(horizon, 1)).astype(np.float32)
    env_actions = to_env_actions(actions, env.action_space.low, env.action_space.high)
    true_obs, true_rewards, _, _ = replay_actions(env, sim_state, env_actions[:-1])
    obs = np.concatenate([obs0[None], true_obs])
    traj = ImaginedTrajectory(
        th.as_tensor(obs[None]),  # float64: the comparison is exact
        th.as_tensor(actions[None]),
        th.as_tensor(np.append(true_rewards, 0.0)[None]),
        th.zeros(1, horizon),
    )
    return traj, sim_state


def test_metric_is_zero_for_the_simulator_itself():
    env = gym.make("InvertedPendulum-v4")
    assert supports_sim_state(env)
    env.reset(seed=0)
    trajs, states = zip(*[simulator_trajectory(env, 6, seed) for seed in range(5)], strict=True)
    batch = ImaginedTrajectory(
        *(th.cat([getattr(t, f) for t in trajs]) for f in ["observations", "actions", "rewards", "dones"])
    )
    errors = open_loop_errors(env, batch, np.stack(states), env.action_space.low, env.action_space.high)
    assert np.all(errors["state_mse"] == 0.0) and errors["reward_mse"] == 0.0
    # and it is not zero for a perturbed trajectory, growing with the perturbation
    batch.observations[:, 2:] += 0.1
    errors = open_loop_errors(env, batch, np.stack(states), env.action_space.low, env.action_space.high)
    assert errors["state_mse"][1] == 0.0 and np.allclose(errors["state_mse"][2:][errors["count"][2:] > 0], 0.01)


def test_pendulum_has_no_simulator_state():
    assert not supports_sim_state(gym.make("Pendulum-v1"))


def test_termination_rate_counts_replays_that_end_within_the_window():
    env = gym.make("InvertedPendulum-v4")
    env.reset(seed=0)
    sim_state = env.unwrapped.state_vector().copy()
    horizon = 10
    # Full force one way topples the pole within 10 steps (in 3); no force from the (nearly) upright start does not.
    actions = th.stack([th.ones(horizon, 1), th.zeros(horizon, 1)]).double()
    env_actions = [to_env_actions(a.numpy(), env.action_space.low, env.action_space.high) for a in actions]
    steps = [replay_actions(env, sim_state, a)[2:] for a in env_actions]
    assert steps[0][1] and steps[0][0] < horizon and not steps[1][1] and steps[1][0] == horizon
    batch = ImaginedTrajectory(
        th.zeros(2, horizon + 1, 4, dtype=th.float64),
        th.cat([actions, actions[:, :1]], dim=1),
        th.zeros(2, horizon + 1),
        th.zeros(2, horizon + 1),
    )
    errors = open_loop_errors(env, batch, np.stack([sim_state, sim_state]), env.action_space.low, env.action_space.high)
    assert errors["termination_rate"] == 0.5


def test_simulator_rollouts_replay_the_policy_and_pad_after_termination():
    envs = [gym.make("InvertedPendulum-v4") for _ in range(2)]
    starts = []
    for i, env in enumerate(envs):
        obs, _ = env.reset(seed=i)
        starts.append((obs, env.unwrapped.state_vector().copy()))
    obs0 = th.as_tensor(np.stack([s[0] for s in starts]), dtype=th.float32)
    sim_states = np.stack([s[1] for s in starts])
    # a policy pushing right at full force: the pole falls within a few steps
    traj = simulator_rollouts(envs, lambda obs: th.ones(len(obs), 1), obs0, sim_states, 12, np.array([-3.0]), np.array([3.0]))
    assert traj.observations.shape == (2, 12, 4) and traj.actions.shape == (2, 12, 1)
    for i in range(2):
        true_obs, true_rewards, alive, terminated = replay_actions(envs[i], sim_states[i], np.full((11, 1), 3.0))
        assert terminated and alive < 11
        assert np.allclose(traj.observations[i, 1:].numpy(), true_obs, atol=1e-6)
        assert np.allclose(traj.rewards[i, :-1].numpy(), true_rewards)
        # terminal from the terminating transition on; the state is held, as the replay buffer pads real windows
        assert traj.dones[i, : alive - 1].sum() == 0 and bool(traj.dones[i, alive - 1 :].all())
