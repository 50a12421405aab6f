import io
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_polygrad import PolyGRAD
from sb3_polygrad.callbacks import ImaginationVideoCallback, preserved_random_state
from sb3_polygrad.video import (
    ObservationLayout,
    RenderingBackendError,
    StateRollout,
    compose_panels,
    encode_gif,
    replay_states,
    select_gl_backend,
)
from sb3_polygrad.video import backend as backend_module
from sb3_polygrad.video.render_command import main as render_main
from sb3_polygrad.video.states import hold_after_termination


def require_rendering() -> str:
    """The OpenGL backend, or a skip naming what is missing; CI sets SB3_POLYGRAD_REQUIRE_RENDERING=1 to fail instead."""
    try:
        return select_gl_backend()
    except RenderingBackendError as e:
        if os.environ.get("SB3_POLYGRAD_REQUIRE_RENDERING") == "1":
            raise
        pytest.skip(f"no OpenGL backend can render MuJoCo offscreen here: {e}")


def gif_duration_ms(data: bytes) -> int:
    """Total playing time of a GIF (Pillow merges repeated frames into one longer frame, so count time, not frames)."""
    total = 0
    with Image.open(io.BytesIO(data)) as gif:
        for k in range(gif.n_frames):
            gif.seek(k)
            total += gif.info["duration"]
    return total


def test_layout_rebuilds_hopper_states_from_observations():
    """Hopper's observation lacks x: integrating the x velocity from the start state recovers it closely."""
    env = gym.make("Hopper-v4")
    obs, _ = env.reset(seed=0)
    layout = ObservationLayout.from_env(env)
    assert (layout.nq, layout.nv, layout.skipped_qpos) == (6, 6, 1)
    observations, states = [obs], [env.unwrapped.state_vector()]
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, *_ = env.step(rng.uniform(-0.3, 0.3, size=3))
        observations.append(obs)
        states.append(env.unwrapped.state_vector())
    rebuilt = layout.to_sim_states(np.array(observations), states[0])
    np.testing.assert_allclose(rebuilt[:, 1:], np.array(states)[:, 1:], atol=1e-9)  # observed coordinates: exact
    np.testing.assert_allclose(rebuilt[:, 0], np.array(states)[:, 0], atol=1e-3)  # x: integrated


def test_layout_of_full_state_and_unmappable_envs():
    assert ObservationLayout.from_env(gym.make("InvertedPendulum-v4")).skipped_qpos == 0
    with pytest.raises(ValueError, match="not a MuJoCo env"):
        ObservationLayout.from_env(gym.make("Pendulum-v1"))
    with pytest.raises(ValueError, match="Cannot map Reacher"):  # cos/sin of the angles, not qpos
        ObservationLayout.from_env(gym.make("Reacher-v4"))


def test_replay_and_imagined_rollouts_are_held_after_termination():
    env = gym.make("Hopper-v4")
    env.reset(seed=0)
    fallen = env.unwrapped.state_vector().copy()
    fallen[1] = 0.3  # torso height below Hopper's healthy range: the first step terminates
    rollout = replay_states(env, fallen, np.zeros((4, 3)))
    assert rollout.sim_states.shape == (5, 12)
    assert rollout.terminated.all() and (rollout.rewards[1:] == 0).all()
    np.testing.assert_array_equal(rollout.sim_states[2:], np.repeat(rollout.sim_states[1:2], 3, axis=0))

    moving = StateRollout(np.arange(5.0)[:, None] * np.ones((5, 2)), np.ones(4), np.array([False, True, False, False]))
    held = hold_after_termination(moving)
    np.testing.assert_array_equal(held.sim_states[:, 0], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(held.rewards, [1, 1, 0, 0])
    np.testing.assert_array_equal(held.terminated, [False, True, True, True])


def test_compose_panels_and_encode_gif():
    video = np.zeros((3, 32, 40, 3), dtype=np.uint8)
    captions = [[f"t={k}" for k in range(3)]] * 2
    composed = compose_panels([video, video], ["imagined", "real"], captions)
    n_frames, height, width, _ = composed.shape
    assert n_frames == 3 and width == 2 * 40 + 4 and height > 32 and height % 2 == 0
    assert (composed[:, :, 40:44] == 255).all()  # the white gap between the panels
    with_header = compose_panels([video, video], ["imagined", "real"], captions, header="header")
    assert with_header.shape[1] > height and with_header.shape[2] == width
    assert gif_duration_ms(encode_gif(composed, fps=10)) == 300
    with pytest.raises(ValueError, match="share frame count"):
        compose_panels([video, video[:2]], ["a", "b"], captions)


def test_missing_backend_error_names_the_libraries(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(backend_module, "_probe", lambda backend, timeout: "ImportError: cannot load library")
    select_gl_backend.cache_clear()
    try:
        with pytest.raises(RenderingBackendError, match="libegl1") as error:
            select_gl_backend()
        assert "libosmesa6" in str(error.value) and "MUJOCO_GL=osmesa" in str(error.value)
    finally:
        select_gl_backend.cache_clear()  # the next caller probes the real backends


def test_preserved_random_state_leaves_training_streams_unchanged():
    np.random.seed(1)
    th.manual_seed(1)
    expected = (np.random.rand(), th.rand(1).item())
    np.random.seed(1)
    th.manual_seed(1)
    with preserved_random_state(th.device("cpu")):
        np.random.rand(5)
        th.rand(5)
    assert (np.random.rand(), th.rand(1).item()) == expected


def test_callback_writes_video_and_tensorboard(tiny_kwargs, tmp_path):
    require_rendering()
    model = PolyGRAD("MlpPolicy", "Hopper-v4", tensorboard_log=str(tmp_path / "tb"), seed=0, **tiny_kwargs)
    callback = ImaginationVideoCallback(render_freq=110, save_path=tmp_path / "videos", n_starts=1, width=64, height=64)
    model.learn(112, callback=callback)
    # One clip: H = 4 frames, then the last one held for half a second, at 10 fps.
    assert gif_duration_ms((tmp_path / "videos" / "imagination_110.gif").read_bytes()) == (4 + 5) * 100
    (run,) = (tmp_path / "tb").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    assert "imagination/video" in events.Tags()["images"]


def test_render_command(tiny_kwargs, tmp_path):
    require_rendering()
    model = PolyGRAD("MlpPolicy", "Hopper-v4", seed=0, **tiny_kwargs)
    model.learn(110)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    args = ["--env", "Hopper-v4", "--model", str(tmp_path / "model.zip"), "--starts", "1", "--segments", "2", "--size", "64"]
    # Start states from the saved replay buffer, then from episodes of the policy.
    render_main([*args, "--output", str(tmp_path / "buffer.gif"), "--replay-buffer", str(tmp_path / "buffer.pkl")])
    render_main([*args, "--output", str(tmp_path / "policy.mp4"), "--warmup-steps", "3"])
    # Two horizons back to back: 1 + 2 * (H - 1) = 7 frames, then 5 held, at 10 fps.
    assert gif_duration_ms((tmp_path / "buffer.gif").read_bytes()) == (7 + 5) * 100
    assert (tmp_path / "policy.mp4").stat().st_size > 0


def test_render_command_keeps_its_name_at_the_package_top():
    # The code lives in video/render_command.py; `python -m sb3_polygrad.render` must still reach it.
    command = [sys.executable, "-m", "sb3_polygrad.render", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: python -m sb3_polygrad.render")


def test_callback_rejects_non_mujoco_env(tiny_kwargs, tmp_path):
    model = PolyGRAD("MlpPolicy", "Pendulum-v1", **tiny_kwargs)
    with pytest.raises(ValueError, match="must be a MuJoCo env"):
        model.learn(10, callback=ImaginationVideoCallback(render_freq=100, save_path=tmp_path))
