"""Rows of a benchmark CSV written whole or not at all: a run killed mid-write leaves the previous file in place."""

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def write_rows(path: Path, rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """
    Write ``rows`` to the CSV ``path`` through a temporary file beside it, renamed onto it once complete.

    :param path: the CSV (its folder is created if missing)
    :param rows: the rows, each with the keys ``fields``
    :param fields: the columns, in order
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
