"""
One-question diagnostics, apart from the benchmark runner: each answers one question about a trained PolyGRAD or its
world model (``python -m benchmarks.diagnostics.<name>``) and writes its answer, with the command that gave it, under
``benchmarks/results/diagnostics/<name>/``. ``ip_presets`` holds the InvertedPendulum presets that the runner runs like
its benchmarks.
"""

from pathlib import Path

import gymnasium as gym

from benchmarks.presets import RESULTS as BENCHMARK_RESULTS
from sb3_polygrad import PolyGRAD

RESULTS = BENCHMARK_RESULTS / "diagnostics"

# What a checkpoint folder holds, as ``benchmarks.run`` writes one at each evaluation (``<job>.ckpt/<env steps>/``).
CHECKPOINT_FILES = ("model.zip", "replay_buffer.pkl")


def missing_checkpoint_file(folder: Path) -> str | None:
    """:return: a message naming the first file of a checkpoint that ``folder`` lacks; None if it holds them all"""
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            return f"{folder} holds no {name}"
    return None


def load_checkpoint(folder: Path, env_id: str | None = None) -> PolyGRAD:
    """
    :param folder: a checkpoint folder (:data:`CHECKPOINT_FILES`)
    :param env_id: the env to attach (imagination may read the task's termination rule off it); None: none
    :return: the model on the CPU, with its replay buffer
    """
    model = PolyGRAD.load(folder / "model.zip", env=None if env_id is None else gym.make(env_id), device="cpu")
    model.load_replay_buffer(folder / "replay_buffer.pkl")
    return model
