"""Draw simulator states offscreen, lay trajectories out side by side with labels, and write GIF or MP4 files.

Shape letters: ``T`` frames, ``S`` simulator-state size; frames are ``uint8`` RGB arrays of shape (T, height, width, 3)."""

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sb3_polygrad.common.simulator import set_sim_state
from sb3_polygrad.video.backend import select_gl_backend

_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_ALERT = (190, 30, 30)
_GAP = 4  # pixels between panels


def make_render_env(env_id: str, width: int, height: int, seed: int = 0, **env_kwargs: Any) -> gym.Env:
    """
    A MuJoCo env that draws offscreen (``render_mode="rgb_array"``) with the task's own camera, reset once.

    :param env_id: registered id, e.g. ``"Hopper-v4"``
    :param width: frame width in pixels
    :param height: frame height in pixels
    :param seed: seed of the reset
    :param env_kwargs: further keyword arguments of ``gym.make``
    :return: the env
    :raises RenderingBackendError: when no OpenGL backend works (the message names the library to install)
    """
    select_gl_backend()
    env = gym.make(env_id, **{**env_kwargs, "render_mode": "rgb_array", "width": width, "height": height})
    env.reset(seed=seed)
    return env


def render_states(env: gym.Env, sim_states: np.ndarray) -> np.ndarray:
    """
    Draw each simulator state as the env's camera sees it.

    :param env: an env from ``make_render_env``
    :param sim_states: ``[qpos, qvel]`` per frame, shape (T, S)
    :return: frames, shape (T, height, width, 3)
    """
    frames = []
    for sim_state in sim_states:
        set_sim_state(env, sim_state)  # set_state runs mj_forward, so body positions follow qpos
        frames.append(np.asarray(env.render(), dtype=np.uint8).copy())
    return np.stack(frames)


def _text_bar(width: int, height: int, text: str, font: Any, color: tuple[int, int, int]) -> np.ndarray:
    """A white strip of (height, width) with ``text`` centred, shape (height, width, 3)."""
    bar = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(bar)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text, fill=color, font=font)
    return np.asarray(bar)


def compose_panels(
    panels: Sequence[np.ndarray],
    titles: Sequence[str],
    captions: Sequence[Sequence[str]],
    alerts: Sequence[Sequence[bool]] | None = None,
    header: str | None = None,
) -> np.ndarray:
    """
    Lay videos of the same length side by side, each with a title above and a per-frame caption below.

    :param panels: one video per panel, each of shape (T, height, width, 3) with the same T and height
    :param titles: one title per panel
    :param captions: per panel, one caption per frame
    :param alerts: per panel and frame, whether to draw the caption in red (e.g. after the episode ended)
    :param header: a line above all panels (``None``: none)
    :return: the composed video, shape (T, height', width', 3)
    """
    n_frames, height = panels[0].shape[:2]
    if any(p.shape[:2] != (n_frames, height) for p in panels) or not len(panels) == len(titles) == len(captions):
        raise ValueError("panels must share frame count and height, with one title and one caption list each")
    font_size = max(8, height // 18)
    font, title_font = ImageFont.load_default(size=font_size), ImageFont.load_default(size=font_size + 1)
    bar = (font_size + 9) // 2 * 2  # text plus a margin, rounded to even as video codecs need
    columns = []
    for k, (video, title) in enumerate(zip(panels, titles, strict=True)):
        width = video.shape[2]
        title_bar = _text_bar(width, bar, title, title_font, _TEXT)
        frames = []
        for i, frame in enumerate(video):
            red = alerts is not None and alerts[k][i]
            caption = _text_bar(width, bar, captions[k][i], font, _ALERT if red else _TEXT)
            frames.append(np.concatenate([title_bar, frame, caption], axis=0))
        columns.append(np.stack(frames))  # (T, height + 2 bar, width, 3)
    gap = np.full((*columns[0].shape[:2], _GAP, 3), _BACKGROUND, dtype=np.uint8)
    video = np.concatenate([part for column in columns for part in (column, gap)][:-1], axis=2)
    if header is not None:
        header_bar = _text_bar(video.shape[2], bar, header, font, _TEXT)
        video = np.concatenate([np.broadcast_to(header_bar, (n_frames, *header_bar.shape)), video], axis=1)
    return video


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad height and width to even sizes with white, as H.264's 4:2:0 chroma needs."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=255)


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """
    Encode frames as a looping animated GIF.

    :param frames: shape (T, height, width, 3), uint8
    :param fps: frames per second
    :return: the GIF file's bytes
    """
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    # GIF durations are in milliseconds; optimize drops unused palette entries, which keeps files small.
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=True
    )
    return buffer.getvalue()


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """
    Write frames to a ``.gif`` (Pillow) or ``.mp4`` (imageio with ffmpeg) file.

    :param path: output file; its suffix picks the format
    :param frames: shape (T, height, width, 3), uint8
    :param fps: frames per second
    :return: the path written
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"Unsupported video format {suffix!r}: use .gif or .mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        path.write_bytes(encode_gif(frames, fps))
        return path
    try:
        import imageio.v2 as imageio  # optional: only MP4 needs it
    except ImportError as e:
        raise ImportError("Writing MP4 needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg") from e
    # macro_block_size=1: keep the frame size as is (it is already even) instead of resizing to multiples of 16.
    imageio.mimwrite(path, list(_even(frames)), fps=fps, macro_block_size=1)
    return path
