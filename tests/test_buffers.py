import numpy as np
import pytest
from gymnasium import spaces

from sb3_polygrad.buffers import PolyGRADReplayBuffer

OBS = spaces.Box(-np.inf, np.inf, (2,), np.float64)
ACT = spaces.Box(-1, 1, (1,), np.float32)


def fill(buffer: PolyGRADReplayBuffer, lengths: list[list[int]], ends: list[list[str]]) -> None:
    """Write episodes of the given lengths per env; obs = [episode id, step], reward = step + 1, action = step / 100.
    ``ends`` says how each episode ends: "term" (terminated) or "trunc" (time limit)."""
    n_envs = buffer.n_envs
    streams = []
    for env in range(n_envs):
        rows = []
        for ep, (length, end) in enumerate(zip(lengths[env], ends[env], strict=True)):
            for step in range(length):
                last = step == length - 1
                rows.append((1000 * env + ep, step, last, last and end == "trunc"))
        streams.append(rows)
    for i in range(min(len(s) for s in streams)):
        obs = np.array([[s[i][0], s[i][1]] for s in streams], dtype=np.float64)
        next_obs = obs + np.array([0.0, 1.0])
        action = np.array([[s[i][1] / 100] for s in streams], dtype=np.float32)
        reward = np.array([s[i][1] + 1.0 for s in streams], dtype=np.float32)
        done = np.array([s[i][2] for s in streams])
        infos = [{"TimeLimit.truncated": s[i][3], "sim_state": np.array([s[i][0], s[i][1], 7.0])} for s in streams]
        buffer.add(obs, next_obs, action, reward, done, infos)


def check_windows(batch, horizon: int) -> None:
    obs = batch.observations.numpy()
    term = batch.terminals.numpy()
    rew = batch.rewards.numpy()
    for i in range(obs.shape[0]):
        episode = obs[i, :, 0]
        assert (episode == episode[0]).all(), "a window crossed an episode boundary"
        ends = np.flatnonzero(term[i] == 1)
        end = ends[0] if len(ends) else horizon
        for k in range(horizon):
            if k <= end:  # real data: consecutive steps
                assert obs[i, k, 1] == obs[i, 0, 1] + k and rew[i, k] == obs[i, k, 1] + 1
            else:  # padding: terminal, no reward, state held at the terminal (next) observation of the last real row
                assert term[i, k] == 1 and rew[i, k] == 0 and obs[i, k, 1] == obs[i, end, 1] + 1


@pytest.mark.parametrize("n_envs", [1, 3])
def test_windows_stay_within_episodes_and_pad_after_termination(n_envs):
    buffer = PolyGRADReplayBuffer(10_000, OBS, ACT, "cpu", n_envs=n_envs)
    lengths = [[3, 7, 2, 20, 5, 4, 30] for _ in range(n_envs)]
    ends = [["term", "trunc", "term", "trunc", "term", "term", "trunc"] for _ in range(n_envs)]
    fill(buffer, lengths, ends)
    batch = buffer.sample_windows(2000, horizon=5)
    assert batch.observations.shape == (2000, 5, 2) and batch.actions.shape == (2000, 5, 1)
    assert batch.sim_states is not None and batch.sim_states.shape == (2000, 5, 3)
    check_windows(batch, 5)
    term = batch.terminals.numpy()
    # padded windows exist (after terminations), and truncations are never terminals
    assert (term[:, 1:].sum(axis=1) > 1).any()
    obs = batch.observations.numpy()
    truncated_last = (obs[:, :, 0] % 1000 == 1) & (obs[:, :, 1] == 6)  # last step of the truncated 7-step episode
    assert (term[truncated_last] == 0).all()
    if n_envs > 1:
        assert len(np.unique(obs[:, 0, 0] // 1000)) == n_envs


def test_no_window_runs_past_a_truncation_or_the_write_head():
    buffer = PolyGRADReplayBuffer(10_000, OBS, ACT, "cpu")
    fill(buffer, [[6, 9]], [["trunc", "trunc"]])  # the second episode is still running at the write head
    batch = buffer.sample_windows(500, horizon=4)
    obs = batch.observations.numpy()
    # starts 0..2 of the first episode, 0..5 of the second: nothing later fits in 4 steps
    starts = set(map(tuple, obs[:, 0].astype(int)))
    assert starts == {(0, s) for s in range(3)} | {(1, s) for s in range(6)}
    assert batch.terminals.sum() == 0


def test_ring_buffer_wrap():
    buffer = PolyGRADReplayBuffer(40, OBS, ACT, "cpu")
    fill(buffer, [[25, 25, 25]], [["term", "term", "term"]])  # 75 rows into 40: wraps around
    assert buffer.full
    check_windows(buffer.sample_windows(1000, horizon=6), 6)
    # the env step at which each window's first row was recorded: episode * 25 + step, as fill wrote it
    rows, envs = buffer.sample_window_rows(200, horizon=6)
    first = buffer.windows(rows, envs).observations[:, 0].numpy()
    np.testing.assert_array_equal(buffer.env_steps_of_rows(rows[:, 0], n_timesteps=75), 25 * first[:, 0] + first[:, 1])


@pytest.mark.parametrize("n_envs, capacity, newest, first_start", [(1, 1000, 20, 40), (2, 1000, 20, 50), (1, 40, 10, 65)])
def test_newest_draws_only_the_windows_that_start_among_the_newest_transitions(n_envs, capacity, newest, first_start):
    buffer = PolyGRADReplayBuffer(capacity, OBS, ACT, "cpu", n_envs=n_envs)
    length = 75 if capacity == 40 else 60  # one open episode per env; with capacity 40 it wraps, keeping steps 35..74
    fill(buffer, [[length]] * n_envs, [["trunc"]] * n_envs)
    batch = buffer.sample_windows(2000, horizon=4, newest=newest)
    check_windows(batch, 4)
    starts = batch.observations.numpy()[:, 0]
    # each env's newest newest // n_envs steps start windows, except the last 3, which would run past the write head
    assert set(starts[:, 1].astype(int)) == set(range(first_start, length - 3))
    assert len(np.unique(starts[:, 0])) == n_envs
    too_few = 4 * n_envs - 1
    with pytest.raises(ValueError, match=rf"newest \({too_few}\) must hold a 4-step window"):
        buffer.sample_windows(8, horizon=4, newest=too_few)


def test_too_little_data_is_a_clear_error():
    buffer = PolyGRADReplayBuffer(100, OBS, ACT, "cpu")
    fill(buffer, [[3]], [["trunc"]])
    with pytest.raises(RuntimeError, match="too few"):
        buffer.sample_windows(8, horizon=5)
    with pytest.raises(ValueError, match="horizon"):
        buffer.sample_windows(8, horizon=1)


@pytest.mark.parametrize("n_envs, capacity", [(1, 10_000), (3, 10_000), (2, 50)])
def test_n_valid_windows_counts_the_windows_sampling_draws(n_envs, capacity):
    buffer = PolyGRADReplayBuffer(capacity, OBS, ACT, "cpu", n_envs=n_envs)
    assert buffer.n_valid_windows(4) == 0
    # Per env the same episodes in another order, then one that runs past the write head (fill stops at the shortest
    # stream: env 0's last episode ends exactly there, truncated).
    episodes = [(3, "term"), (7, "trunc"), (2, "term"), (20, "trunc"), (5, "term"), (4, "term")]
    order = [episodes[env:] + episodes[:env] + [(100 + env, "trunc")] for env in range(n_envs)]
    lengths = [[length for length, _ in env_episodes] for env_episodes in order]
    ends = [[end for _, end in env_episodes] for env_episodes in order]
    fill(buffer, lengths, ends)
    np.random.seed(0)
    for horizon in (2, 4, 6):
        obs = buffer.sample_windows(20_000, horizon).observations.numpy()
        drawn = {tuple(start) for start in obs[:, 0].astype(int)}  # [episode id, step] is unique per env and row
        assert buffer.n_valid_windows(horizon) == len(drawn)


def test_truncate_open_episodes_closes_only_the_open_last_rows():
    buffer = PolyGRADReplayBuffer(100, OBS, ACT, "cpu", n_envs=3)
    # env 0 terminates, env 1 is truncated and env 2 is still running at the last row
    fill(buffer, [[5], [5], [8]], [["term"], ["trunc"], ["trunc"]])
    buffer.truncate_open_episodes()
    last = buffer.pos - 1
    assert buffer.dones[last].tolist() == [1, 1, 1]
    assert buffer.timeouts[last].tolist() == [0, 1, 1]  # the termination stays a termination
    assert buffer.dones[:last].sum() == 0  # nothing else changed
    assert buffer.n_valid_windows(3) == 5 + 3 + 3  # windows may run past a termination, not past a truncation
