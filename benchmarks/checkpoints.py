"""
Checkpoints of a benchmark job, so that a job killed part-way (a machine's session ending, an interrupt) continues from
its last evaluation on the next ``benchmarks.run`` instead of starting again.

A checkpoint is a folder per evaluation, ``<job>.ckpt/<env steps>/``, holding the model (with its optimisers), its replay
buffer where it has one, the statistics of a ``VecNormalize`` training env, and the evaluation rows and training
wall-clock so far. The file ``latest`` names the newest complete folder and is replaced atomically only once that
folder is fully written, so a kill while saving leaves the previous checkpoint in force; older folders are removed
after. A resumed job starts new episodes (the envs' mid-episode state is not saved), so its curve after the resume is
not bit-identical to that of a job that ran through.

A checkpoint holds the whole replay buffer (hundreds of MB), so it stays on the machine that wrote it. Its evaluation
rows are also mirrored to a small CSV outside the folder (``benchmarks/results/<preset>/unfinished/``, kept with the
results), so that the evaluations of an unfinished job outlive the checkpoint, on another machine too.
"""

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from benchmarks.csv_rows import write_rows


class JobCheckpoint:
    """
    The checkpoints of one benchmark job.

    :param folder: the job's checkpoint folder (created on the first save)
    :param evaluations: a CSV that each save replaces, atomically, with the evaluation rows so far (None: none)
    """

    def __init__(self, folder: Path, evaluations: Path | None = None) -> None:
        self.folder = folder
        self.evaluations = evaluations

    def latest(self) -> Path | None:
        """:return: the newest complete checkpoint, or None if there is none"""
        pointer = self.folder / "latest"
        return self.folder / pointer.read_text().strip() if pointer.exists() else None

    def save(self, model: BaseAlgorithm, rows: list[dict[str, Any]], train_time: float) -> None:
        """
        Write a checkpoint of ``model`` at its current env step, then make it the latest.

        :param model: the model being trained
        :param rows: the job's evaluation rows so far
        :param train_time: the job's training wall-clock so far, in seconds
        """
        step = self.folder / str(model.num_timesteps)
        shutil.rmtree(step, ignore_errors=True)  # a folder left by a kill while it was being written
        step.mkdir(parents=True)
        model.save(step / "model.zip")
        if isinstance(model, OffPolicyAlgorithm):
            model.save_replay_buffer(step / "replay_buffer.pkl")
        env = model.get_env()
        if isinstance(env, VecNormalize):
            with (step / "vec_normalize.pkl").open("wb") as f:
                pickle.dump((env.obs_rms, env.ret_rms), f)
        (step / "progress.json").write_text(json.dumps({"rows": rows, "train_time": train_time}))
        pointer = self.folder / "latest.tmp"
        pointer.write_text(step.name)
        pointer.replace(self.folder / "latest")
        for old in self.folder.iterdir():
            if old.is_dir() and old != step:
                shutil.rmtree(old)
        if self.evaluations is not None:
            write_rows(self.evaluations, rows, list(rows[0]))

    def progress(self) -> tuple[list[dict[str, Any]], float] | None:
        """
        :return: the evaluation rows and the training wall-clock of the newest checkpoint; None without one (read while
            the job runs, a checkpoint replaced in between is followed to its successor)
        """
        for _ in range(3):
            step = self.latest()
            if step is None:
                return None
            try:
                progress = json.loads((step / "progress.json").read_text())
            except FileNotFoundError:  # removed by the next save after `latest` was read: read the pointer again
                continue
            return progress["rows"], progress["train_time"]
        return None

    def restore(self, model: BaseAlgorithm) -> tuple[BaseAlgorithm, list[dict[str, Any]], float] | None:
        """
        :param model: a freshly built model of the job, whose env (and its ``VecNormalize``) the restored model takes over
        :return: the restored model, its evaluation rows and its training wall-clock so far; None without a checkpoint
        """
        step = self.latest()
        if step is None:
            return None
        env = model.get_env()
        restored = type(model).load(step / "model.zip", env=env, device=model.device)
        if isinstance(restored, OffPolicyAlgorithm):
            restored.load_replay_buffer(step / "replay_buffer.pkl")
        if isinstance(env, VecNormalize):
            with (step / "vec_normalize.pkl").open("rb") as f:
                env.obs_rms, env.ret_rms = pickle.load(f)
        progress = self.progress()
        assert progress is not None  # the job is not running: its latest checkpoint stays in place
        return restored, *progress

    def remove(self) -> None:
        """Delete the job's checkpoints and its CSV of evaluations so far (once its rows are saved for good)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.evaluations is not None:
            self.evaluations.unlink(missing_ok=True)
