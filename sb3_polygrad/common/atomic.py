"""Write a file so that it is whole or absent: a run killed while saving keeps its previous checkpoint."""

import contextlib
import io
import os
import pathlib
import uuid
from collections.abc import Iterator


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
