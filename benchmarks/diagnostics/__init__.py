"""
One-question diagnostics, apart from the benchmark runner: each answers one question about a trained PolyGRAD or its
world model (``python -m benchmarks.diagnostics.<name>``) and writes its answer, with the command that gave it, under
``benchmarks/results/diagnostics/<name>/``. ``ip_presets`` holds the InvertedPendulum presets that the runner runs like
its benchmarks.
"""

from benchmarks.presets import RESULTS as BENCHMARK_RESULTS

RESULTS = BENCHMARK_RESULTS / "diagnostics"
