"""What a benchmark's figures were measured on: the CPU, the OS and the versions of the packages that set the floating-
point path (two machines with the same code can train different models: docs/results.md, "SAC against the RL Zoo's own
command")."""

import os
import platform
from importlib import metadata
from pathlib import Path

import torch as th

PACKAGES = ("torch", "numpy", "gymnasium", "mujoco", "stable-baselines3", "sb3-contrib", "rl-zoo3")


def cpu_model() -> str:
    """:return: the CPU's model name (from ``/proc/cpuinfo`` on Linux), else what ``platform`` knows"""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor() or "unknown CPU"


def describe_machine() -> str:
    """:return: one line: the OS, the CPU model and count, Python, the versions of :data:`PACKAGES` that are installed
    and torch's CPU build (no ``;`` before the versions, which a preset's ``machine.txt`` line follows with ``; algos``)"""
    packages = []
    for name in PACKAGES:
        try:
            packages.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    torch_build = f"MKL {'on' if th.backends.mkl.is_available() else 'off'}, {th.backends.cpu.get_cpu_capability()}"
    return (
        f"{platform.platform()}, {cpu_model()}, {os.cpu_count()} CPU cores, python {platform.python_version()}; "
        f"{', '.join(packages)} (torch: {torch_build})"
    )
