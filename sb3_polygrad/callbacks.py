"""Callbacks for PolyGRAD's ``learn``: videos of what the world model imagines, written to files and TensorBoard, and
the open-loop error of its imagination against the simulator, logged (``world_model/*``)."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, cast

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat

from sb3_polygrad.common.simulator import make_simulator_env
from sb3_polygrad.common.termination_rules import TerminationRule, termination_rule
from sb3_polygrad.polygrad.arguments import integer
from sb3_polygrad.polygrad.polygrad import PolyGRAD
from sb3_polygrad.polygrad.world_model_evaluation import world_model_errors
from sb3_polygrad.video.frames import encode_gif, make_render_env, write_video
from sb3_polygrad.video.imagination import buffer_start_states, imagination_video


@contextmanager
def preserved_random_state(device: th.device) -> Iterator[None]:
    """
    Restore NumPy's and PyTorch's global random states on exit, so that what runs inside leaves training unchanged.

    :param device: the model's device (its CUDA generator is preserved too)
    """
    numpy_state = np.random.get_state()
    with th.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    np.random.set_state(numpy_state)


def log_gif(outputs: list[TensorBoardOutputFormat], tag: str, frames: np.ndarray, fps: float, step: int) -> None:
    """
    Log a video to TensorBoard as an animated GIF in an image summary, as TensorBoard's own ``add_video`` writes it
    (``add_video`` itself, and so SB3's ``Video``, needs ``moviepy.editor``, which moviepy 2 removed).

    :param outputs: SB3's TensorBoard outputs to write to
    :param tag: the summary's tag (shown in the Images tab)
    :param frames: the video, shape (T, height, width, 3), uint8
    :param fps: frames per second
    :param step: the global step (``num_timesteps``)
    """
    # Imported here: tensorboard is optional, as in SB3, and installed wherever a TensorBoard output exists.
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard.writer import FileWriter

    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encode_gif(frames, fps))
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    for output in outputs:
        # SummaryWriter opens its FileWriter on construction; torch leaves the attribute unannotated (None).
        cast(FileWriter, output.writer.file_writer).add_summary(summary, step)
        output.writer.flush()


class ImaginationVideoCallback(BaseCallback):
    """
    Every ``render_freq`` env steps, once the world model has started training, draw the world model's imagination
    against the simulator (``sb3_polygrad.video.imagination_video``) from start states of the replay buffer; write the
    video to ``save_path`` and log it to TensorBoard as an animated GIF under ``imagination/video`` (Images tab).

    The video is made with its own random generators and restores the global ones, so training runs the same with
    or without this callback.

    :param render_freq: env steps between videos
    :param save_path: folder of the video files, ``imagination_<num_timesteps>.<video_format>`` (``None``: no files)
    :param n_starts: start states (clips) per video
    :param n_segments: horizons imagined back to back from each start state
    :param width: width of each panel in pixels
    :param height: height of each panel in pixels
    :param fps: frames per second of the video
    :param video_format: format of the files; TensorBoard always gets a GIF
    :param env_id: registered id of the env to draw (``None``: the training env's)
    :param verbose: verbosity of the callback (SB3's convention; this callback does not print)
    """

    model: PolyGRAD

    def __init__(
        self,
        render_freq: int,
        save_path: str | Path | None = None,
        n_starts: int = 2,
        n_segments: int = 1,
        width: int = 240,
        height: int = 240,
        fps: float = 10.0,
        video_format: Literal["gif", "mp4"] = "gif",
        env_id: str | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if render_freq <= 0 or n_starts <= 0 or n_segments <= 0:
            raise ValueError("render_freq, n_starts and n_segments must be > 0")
        if video_format not in ("gif", "mp4"):
            raise ValueError(f"video_format must be 'gif' or 'mp4', got {video_format!r}")
        self.render_freq = render_freq
        self.save_path = Path(save_path) if save_path is not None else None
        self.n_starts = n_starts
        self.n_segments = n_segments
        self.width = width
        self.height = height
        self.fps = fps
        self.video_format = video_format
        self.env_id = env_id
        self._render_env: gym.Env | None = None
        self._next_render = render_freq

    def _init_callback(self) -> None:
        if not isinstance(self.model, PolyGRAD):
            raise TypeError(f"ImaginationVideoCallback needs a PolyGRAD model, got {type(self.model).__name__}")
        env = self.model.get_env()
        if env is not None and not env.has_attr("state_vector"):
            raise ValueError("ImaginationVideoCallback draws trajectories in MuJoCo: the training env must be a MuJoCo env")
        if self.env_id is None:
            spec = env.get_attr("spec")[0] if env is not None else None
            if spec is None:
                raise ValueError(
                    "The training env was not built from a registered id: pass env_id to ImaginationVideoCallback"
                )
            self.env_id = spec.id
        if self.save_path is None and not self._tensorboard_outputs():
            warnings.warn("ImaginationVideoCallback has nowhere to write: set save_path or the model's tensorboard_log")

    def _tensorboard_outputs(self) -> list[TensorBoardOutputFormat]:
        return [f for f in self.logger.output_formats if isinstance(f, TensorBoardOutputFormat)]

    def _on_step(self) -> bool:
        # Before learning_starts the world model has not trained: its video would show noise.
        if self.num_timesteps < self._next_render or self.num_timesteps <= self.model.learning_starts:
            return True
        self._next_render = (self.num_timesteps // self.render_freq + 1) * self.render_freq
        self.record_video()
        return True

    def record_video(self) -> np.ndarray:
        """
        Make one video now, write it to ``save_path`` and TensorBoard.

        :return: the video, shape (frames, height, width, 3)
        """
        assert self.env_id is not None
        if self._render_env is None:
            self._render_env = make_render_env(self.env_id, self.width, self.height, seed=self.num_timesteps)
        with preserved_random_state(self.model.device):
            obs0, sim_states = buffer_start_states(self.model, self.n_starts)
            frames = imagination_video(
                self.model, self._render_env, obs0, sim_states, self.n_segments, self.fps, seed=self.num_timesteps
            )
        if self.save_path is not None:
            write_video(self.save_path / f"imagination_{self.num_timesteps}.{self.video_format}", frames, self.fps)
        outputs = self._tensorboard_outputs()
        if outputs:
            log_gif(outputs, "imagination/video", frames, self.fps, self.num_timesteps)
        return frames

    def _on_training_end(self) -> None:
        if self._render_env is not None:
            self._render_env.close()
            self._render_env = None


class WorldModelEvaluationCallback(BaseCallback):
    """
    Every ``eval_freq`` env steps, once the world model has started training, the open-loop error of the model's
    imagination against the simulator (``polygrad/world_model_evaluation.py``), logged under ``world_model/*``
    (``docs/logged_metrics.md``). It measures at the start of a rollout, where the model has trained on every step it
    counts.

    Its random numbers come from generators of its own: training runs the same, to the bit, with or without it. It
    needs a MuJoCo env built from a registered id; with another it warns once and logs nothing.

    :param eval_freq: env steps between evaluations
    :param n_trajectories: trajectories imagined and replayed in the simulator at each evaluation
    :param verbose: verbosity of the callback (SB3's convention; this callback does not print)
    """

    model: PolyGRAD

    def __init__(self, eval_freq: int = 10_000, n_trajectories: int = 100, verbose: int = 0) -> None:
        super().__init__(verbose)
        integer("[1, inf)").check("eval_freq", eval_freq)
        integer("[1, inf)").check("n_trajectories", n_trajectories)
        self.eval_freq = eval_freq
        self.n_trajectories = n_trajectories
        self._env: gym.Env | None = None
        self._rule: TerminationRule | None = None
        self._unavailable = False
        self._next_eval = eval_freq

    def _init_callback(self) -> None:
        if not isinstance(self.model, PolyGRAD):
            raise TypeError(f"WorldModelEvaluationCallback needs a PolyGRAD model, got {type(self.model).__name__}")

    def _on_training_start(self) -> None:
        # A model that goes on from a checkpoint has been evaluated up to its step count.
        self._next_eval = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq

    def _on_rollout_start(self) -> None:
        steps = self.model.num_timesteps
        # Before learning_starts the world model has not trained: there is nothing to measure.
        if self._unavailable or steps < self._next_eval or steps <= self.model.learning_starts:
            return
        self._next_eval = (steps // self.eval_freq + 1) * self.eval_freq
        if self._env is None:
            env = self.model.get_env()
            assert env is not None  # learn() runs with an env
            self._env = make_simulator_env(env, self.model.seed) if self.model.replay_buffer.sim_states is not None else None
            if self._env is None:
                self._unavailable = True
                warnings.warn("WorldModelEvaluationCallback needs a MuJoCo env built from a registered id: it logs nothing")
                return
            self._rule = termination_rule(env)
        for key, value in world_model_errors(self.model, self._env, self.n_trajectories, self._rule).items():
            self.logger.record(key, value)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
