"""
Published figures of algorithms at the benchmarks' budgets, kept as data in ``published.yml`` with their sources: the
report sets them beside the measured rows, marked as not run here.
"""

from pathlib import Path
from typing import NamedTuple

import yaml

PUBLISHED = Path(__file__).parent / "published.yml"


class PublishedRow(NamedTuple):
    """One algorithm's published return on one env at one budget, over its source's seeds."""

    algo: str
    source: str  # the source's key in published.yml
    title: str  # what the source is
    url: str
    seeds: int
    mean: float
    std: float
    note: str  # how the source's runs differ, where they do ("" if not)


def published_rows(env_id: str, env_steps: int, path: Path | None = None) -> list[PublishedRow]:
    """
    The published figures of ``env_id`` at ``env_steps``, in the file's order.

    :param env_id: the env
    :param env_steps: the budget the figures must be at
    :param path: the file of published figures (default: ``published.yml``)
    :return: one row per algorithm and source that gives the env at that budget
    """
    data = yaml.safe_load((path or PUBLISHED).read_text())
    rows = []
    for row in data["rows"]:
        if row["env_steps"] == env_steps and env_id in row["returns"]:
            mean, std = row["returns"][env_id]
            source = data["sources"][row["source"]]
            rows.append(
                PublishedRow(row["algo"], row["source"], source["title"], source["url"], row["seeds"], mean, std,
                             row.get("note", ""))
            )  # fmt: skip
    return rows
