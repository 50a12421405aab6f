"""Render a saved PolyGRAD model's imagination beside the simulator, as a GIF or MP4.

Usage::

    python -m sb3_polygrad.render --env Hopper-v4 --model model.zip --output hopper.gif [--replay-buffer buffer.pkl]

Start states come from the replay buffer when one is given (as in training), else from episodes of the model's policy.
Set ``MUJOCO_GL`` to choose the OpenGL backend; by default EGL, then OSMesa, are tried.
"""

import argparse
import sys
from collections.abc import Sequence

import gymnasium as gym

from sb3_polygrad.polygrad.polygrad import PolyGRAD
from sb3_polygrad.video.backend import RenderingBackendError
from sb3_polygrad.video.frames import make_render_env, write_video
from sb3_polygrad.video.imagination import buffer_start_states, imagination_video, policy_start_states


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The command line of ``python -m sb3_polygrad.render``.

    :param argv: command-line arguments (``None``: ``sys.argv[1:]``)
    :return: the parsed arguments
    """
    parser = argparse.ArgumentParser(
        prog="python -m sb3_polygrad.render",
        description="Draw what a PolyGRAD world model imagines beside the same actions replayed in MuJoCo.",
    )
    parser.add_argument("--env", required=True, help="registered id of the model's MuJoCo env, e.g. Hopper-v4")
    parser.add_argument("--model", required=True, help="path of the model saved with model.save()")
    parser.add_argument("--output", required=True, help="video file to write (.gif or .mp4)")
    parser.add_argument("--replay-buffer", help="replay buffer from model.save_replay_buffer(), to start from its states")
    parser.add_argument("--starts", type=int, default=3, help="start states, one clip each (default: 3)")
    parser.add_argument("--segments", type=int, default=1, help="horizons imagined back to back per clip (default: 1)")
    parser.add_argument("--warmup-steps", type=int, default=50, help="policy steps before each start without a buffer")
    parser.add_argument("--size", type=int, default=240, help="width and height of each panel in pixels (default: 240)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start states and the sampler (default: 0)")
    parser.add_argument("--device", default="auto", help="torch device of the model (default: auto)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """
    Render the video described by the command line.

    :param argv: command-line arguments (``None``: ``sys.argv[1:]``)
    """
    args = parse_args(argv)
    try:
        env = make_render_env(args.env, args.size, args.size, seed=args.seed)
    except RenderingBackendError as e:
        sys.exit(str(e))
    # Loading with the env checks that the model was trained on spaces of this task.
    model = PolyGRAD.load(args.model, env=gym.make(args.env), device=args.device)
    model.set_random_seed(args.seed)
    if args.replay_buffer is not None:
        model.load_replay_buffer(args.replay_buffer)
        obs0, sim_states = buffer_start_states(model, args.starts)
    else:
        obs0, sim_states = policy_start_states(model, env, args.starts, args.warmup_steps, seed=args.seed)
    frames = imagination_video(model, env, obs0, sim_states, n_segments=args.segments, fps=args.fps, seed=args.seed)
    path = write_video(args.output, frames, args.fps)
    env.close()
    print(f"Wrote {path}: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} at {args.fps:g} fps")


if __name__ == "__main__":
    main()
