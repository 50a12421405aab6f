"""Write a file so that it is whole or absent: a run killed while saving keeps its previous checkpoint."""

import contextlib
import io
import os
import pathlib
import uuid
from collections.abc import Iterable, Iterator

from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm


@contextlib.contextmanager
def atomic_path(path: str | pathlib.Path | io.BufferedIOBase, suffix: str) -> Iterator[pathlib.Path | io.BufferedIOBase]:
    """
    A temporary path beside ``path`` to write to, renamed onto ``path`` once the block completes. The rename is atomic
    (POSIX and Windows, on one file system), so a reader, or the next run after a kill, finds the previous file or the
    new one, never a truncated one; if the block raises, the temporary file is removed. SB3 writes in place.

    :param path: where the file belongs; a path without a suffix gets ``suffix``, as SB3's ``save`` does. An open
        stream is yielded as it is: it belongs to the caller
    :param suffix: suffix SB3 adds to a path without one (``"zip"``, ``"pkl"``)
    :return: a context manager yielding the path (or stream) to write to
    """
    if isinstance(path, io.BufferedIOBase):
        yield path
        return
    target = pathlib.Path(path)
    if target.suffix == "":
        target = target.with_name(f"{target.name}.{suffix}")
    # Hidden and with a suffix of its own: SB3 adds none, and listings of *.zip checkpoints do not show it.
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        with temporary.open("rb") as written:
            os.fsync(written.fileno())  # on disk before the rename makes it the checkpoint, should the machine fail
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


class AtomicSaves(OffPolicyAlgorithm):
    """An off-policy algorithm whose ``save`` and ``save_replay_buffer`` write whole files or none (``atomic_path``)."""

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        SB3's ``save``, written to a temporary file beside ``path`` and renamed onto it: a run killed while saving keeps
        its previous checkpoint instead of a truncated zip.

        :param path: file to save to (``.zip`` is added to a path without a suffix), or an open stream
        :param exclude: attributes not to save, beyond the default ones
        :param include: attributes to save that are excluded by default
        """
        with atomic_path(path, suffix="zip") as temporary:
            super().save(temporary, exclude, include)

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """
        SB3's ``save_replay_buffer``, written atomically as ``save`` is.

        :param path: file to save to (``.pkl`` is added to a path without a suffix), or an open stream
        """
        with atomic_path(path, suffix="pkl") as temporary:
            super().save_replay_buffer(temporary)
