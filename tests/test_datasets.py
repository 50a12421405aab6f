import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC

from sb3_polygrad.baselines.datasets import SACGaussianPolicy, TransitionDataset, collect_transitions, episode_returns
from sb3_polygrad.common.simulator import replay_actions, to_env_actions

ENV_ID = "InvertedPendulum-v4"  # fast, terminates often under a random policy, action bounds [-3, 3]


@pytest.fixture(scope="module")
def policy() -> SACGaussianPolicy:
    agent = SAC("MlpPolicy", ENV_ID, policy_kwargs=dict(net_arch=[8]), seed=0, device="cpu")
    return SACGaussianPolicy(agent, min_std=0.3)


@pytest.fixture(scope="module")
def dataset(policy) -> TransitionDataset:
    return collect_transitions(ENV_ID, policy, 400, seed=0)


def test_collected_transitions_replay_exactly_from_their_simulator_states(dataset):
    assert dataset.observations.shape == (400, 4) and dataset.actions.shape == (400, 1)
    assert dataset.sim_states is not None and dataset.sim_states.shape == (400, 4)
    assert dataset.metadata == {"env_id": ENV_ID, "seed": 0, "policy_min_std": 0.3}
    # every episode ends with a flag, and the next row continues the episode otherwise
    ends = dataset.episode_ends
    assert ends[-1] == 399 and dataset.terminals.any() and dataset.timeouts[-1]
    inside = np.setdiff1d(np.arange(399), ends)
    np.testing.assert_array_equal(dataset.next_observations[inside], dataset.observations[inside + 1])
    # the recorded state is the one *before* the step: replaying the (clipped, unscaled) action gives the next state
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    assert np.abs(dataset.actions).max() > 1.0, "unclipped Gaussian samples are stored"
    env_actions = to_env_actions(dataset.actions, env.action_space.low, env.action_space.high)
    for i in range(0, 400, 37):
        next_obs, reward, _, _ = replay_actions(env, dataset.sim_states[i], env_actions[i : i + 1])
        np.testing.assert_allclose(next_obs[0], dataset.next_observations[i], rtol=1e-6, atol=1e-6)
        assert reward[0] == dataset.rewards[i]


def test_save_load_round_trip(dataset, tmp_path):
    dataset.save(tmp_path / "data")
    loaded = TransitionDataset.load(tmp_path / "data")
    for name in ["observations", "actions", "next_observations", "rewards", "terminals", "timeouts", "sim_states"]:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(dataset, name))
    assert loaded.metadata["env_id"] == ENV_ID and loaded.metadata["n_episodes"] == len(dataset.episode_ends)
    assert loaded.sim_states.dtype == np.float64 and loaded.terminals.dtype == bool


def test_reference_format_per_episode_and_flat(dataset, tmp_path):
    ends = dataset.episode_ends
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    # The reference's buffer: (n_episodes, max_len, dim) arrays with padding and path_lengths, actions in env units.
    keys = ["observations", "actions", "next_observations", "rewards", "terminals", "sim_states"]
    episodic = {"path_lengths": lengths}
    for key in keys:
        array = getattr(dataset, key).reshape(len(dataset), -1).astype(np.float64)
        if key == "actions":
            array = 3.0 * array
        padded = np.full((len(lengths), lengths.max(), array.shape[1]), 99.0)
        for e, (s, n) in enumerate(zip(starts, lengths, strict=True)):
            padded[e, :n] = array[s : s + n]
        episodic[key] = padded
    np.save(tmp_path / "episodic.npy", episodic, allow_pickle=True)
    loaded = TransitionDataset.from_reference(tmp_path / "episodic.npy", env_id=ENV_ID)
    np.testing.assert_allclose(loaded.actions, dataset.actions, atol=1e-6)
    np.testing.assert_array_equal(loaded.observations, dataset.observations)
    np.testing.assert_array_equal(loaded.sim_states, dataset.sim_states)
    # no timeouts key: each episode that does not terminate is closed with a timeout
    np.testing.assert_array_equal(loaded.episode_ends, ends)
    np.testing.assert_array_equal(loaded.timeouts, ~dataset.terminals & np.isin(np.arange(len(dataset)), ends))

    # Flat layout whose flags miss an episode boundary: the cut is found from the observations.
    flat = {key: getattr(dataset, key) for key in [*keys, "timeouts"]}
    flat["timeouts"] = np.zeros(len(dataset), dtype=bool)
    np.savez(tmp_path / "flat.npz", **flat)
    loaded = TransitionDataset.from_reference(tmp_path / "flat.npz")
    np.testing.assert_array_equal(loaded.episode_ends, ends)
    np.testing.assert_array_equal(loaded.actions, dataset.actions)


def test_split_keeps_whole_episodes(dataset):
    train, val = dataset.split(0.25, seed=1)
    assert len(train) + len(val) == len(dataset)
    assert len(val.episode_ends) == round(0.25 * len(dataset.episode_ends))
    rows = {tuple(r) for r in dataset.sim_states}
    assert {tuple(r) for r in train.sim_states}.isdisjoint({tuple(r) for r in val.sim_states})
    assert {tuple(r) for r in train.sim_states} | {tuple(r) for r in val.sim_states} == rows
    assert train.terminals[train.episode_ends].sum() + val.terminals[val.episode_ends].sum() == dataset.terminals.sum()
    with pytest.raises(ValueError, match="hold out"):
        dataset.split(1.0)


def test_replay_buffer_windows_follow_the_simulator(dataset):
    buffer = dataset.to_replay_buffer()
    assert buffer.n_stored() == len(dataset)
    windows = buffer.sample_windows(60, 3)
    assert windows.sim_states is not None and windows.sim_states.shape == (60, 3, 4)
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    low, high = env.action_space.low, env.action_space.high
    for i in range(60):
        # Real steps: up to the first termination, whose next (terminal) state is the first padding row.
        ended = np.flatnonzero(windows.terminals[i, :-1].numpy())
        n_steps = ended[0] + 1 if len(ended) else 2
        sim = windows.sim_states[i, 0].double().numpy()
        actions = to_env_actions(windows.actions[i, :n_steps].numpy(), low, high)
        true_obs, _, _, _ = replay_actions(env, sim, actions)
        np.testing.assert_allclose(windows.observations[i, 1 : n_steps + 1].numpy(), true_obs, atol=1e-4)


def test_gaussian_policy_is_the_delta_method_approximation(policy):
    obs = th.randn(5, 7, 4)
    mean, std = policy.action_distribution_params(obs)
    assert mean.shape == std.shape == (5, 7, 1)
    mean_u, log_std_u, _ = policy.agent.actor.get_action_dist_params(obs.reshape(-1, 4))
    expected_std = ((1 - th.tanh(mean_u) ** 2) * log_std_u.exp()).clamp(min=0.3)
    th.testing.assert_close(mean.reshape(-1, 1), th.tanh(mean_u))
    th.testing.assert_close(std.reshape(-1, 1), expected_std)
    assert (std >= 0.3).all()
    with pytest.raises(ValueError, match="min_std"):
        SACGaussianPolicy(policy.agent, min_std=0.0)


def test_saved_policy_loads_with_the_same_distribution(policy, tmp_path):
    policy.save(tmp_path / "policy.zip")
    loaded = SACGaussianPolicy.load(tmp_path / "policy.zip", min_std=0.3, device="cpu")
    obs = th.randn(3, 4)
    for a, b in zip(policy.action_distribution_params(obs), loaded.action_distribution_params(obs), strict=True):
        th.testing.assert_close(a, b)


def test_episode_returns_and_validation(dataset):
    returns = episode_returns(dataset)
    assert len(returns) == len(dataset.episode_ends)
    assert returns.sum() == pytest.approx(dataset.rewards.sum(), rel=1e-5)
    with pytest.raises(ValueError, match="end its episode"):
        TransitionDataset(*(np.zeros((2, 2)) for _ in range(3)), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="transitions"):
        TransitionDataset(np.zeros((2, 2)), np.zeros((3, 1)), np.zeros((2, 2)), np.zeros(2), np.ones(2), np.zeros(2))
