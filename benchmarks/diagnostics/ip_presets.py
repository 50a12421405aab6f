"""
Diagnostics, not benchmarks: single-task runs that explain PolyGRAD's InvertedPendulum results in ``docs/results.md``
(*Online RL*). Each holds the quick preset's InvertedPendulum setting (20k env steps, evaluated every 2k) unless it says
otherwise, and changes one thing about PolyGRAD. They run like the benchmarks::

    python -m benchmarks.run --preset ip-oracle
    python -m benchmarks.report --preset ip-oracle
"""

from typing import Any

from benchmarks.presets import IP_20K, EnvSetting, Preset, merge_overrides, recorded_variants

# The InvertedPendulum entry that the guided diagnostics ran on: the CPU entry with the paper's guided imagination (the
# InvertedDoublePendulum entry today), as overrides of today's closed-loop InvertedPendulum entry.
GUIDED_ENTRY: dict[str, Any] = dict(
    imagination="guided", denoiser="mlp", n_sampling_steps=16, imagination_kwargs=dict(guidance_learning_rate=0.03)
)


def ip_polygrad(**hyperparam_overrides: Any) -> Preset:
    """PolyGRAD alone on the quick preset's InvertedPendulum setting (20k env steps, 3 seeds), on the guided entry
    (``GUIDED_ENTRY``) with one change.

    :param hyperparam_overrides: PolyGRAD constructor arguments that replace the guided entry's
    :return: the preset
    """
    return Preset(
        envs=(IP_20K,), algos=("polygrad",), hyperparam_overrides=merge_overrides(GUIDED_ENTRY, hyperparam_overrides)
    )


DIAGNOSTIC_PRESETS: dict[str, Preset] = {
    # PolyGRAD alone on InvertedPendulum past the quick budget: what happens after the policy gets good.
    "ip-50k": Preset(
        envs=(EnvSetting("InvertedPendulum-v4", 50_000, 2_000, 950.0),),
        algos=("polygrad",),
        seeds=(0, 1),
        hyperparam_overrides=GUIDED_ENTRY,
    ),
    # The causally masked denoiser (world_model/causal_mlp.py), 3 seeds.
    "ip-causal": ip_polygrad(denoiser="causal_mlp"),
    # Two agent rounds per training call and the censored log-likelihood, 3 seeds.
    "ip-censored": ip_polygrad(agent_gradient_steps=2, actor_critic_kwargs=dict(censored_log_prob=True)),
    # Learning from rollouts in the simulator instead of imagination (a perfect world model): what the learner does when
    # imagination is exact. Not a world-model method.
    "ip-oracle": ip_polygrad(imagination="simulator"),
    # The causal MLP sampled one step after another instead of by guided joint denoising (imagination="sequential", 8
    # sampling steps to halve the cost of its H - 1 passes): what the same kind of world model gives when every imagined
    # action is a policy sample at the state it is taken in. Not PolyGRAD.
    "ip-sequential": ip_polygrad(imagination="sequential", denoiser="causal_mlp", n_sampling_steps=8),
    # ip-sequential at horizon 5: 4 sequential passes instead of 9, half the cost. Not PolyGRAD.
    "ip-sequential-h5": ip_polygrad(imagination="sequential", denoiser="causal_mlp", n_sampling_steps=8, horizon=5),
    # Single changes to PolyGRAD's InvertedPendulum entry as it was when they ran (guided imagination, the CPU entry of
    # InvertedDoublePendulum today), one seed each, the entry itself beside them. Further seeds of a variant:
    # --algos 'polygrad[<label>]' --seeds 1 2.
    "ip-screen": Preset(
        envs=(IP_20K,),
        algos=("polygrad",),
        seeds=(0,),
        hyperparam_overrides=GUIDED_ENTRY,
        variants=recorded_variants("ip-screen"),
    ),
    # Closed-loop imagination (this package's extension, docs/closed_loop_imagination.md): the causal world model trained
    # with a noise level per row, sampled in one staggered pass whose actions are the policy's own samples. Variants:
    # how many denoising iterations each imagined step lags the one before it (imagination_kwargs row_lag), at the 16
    # sampling steps they ran with (the entry now samples all 32).
    "ip-closed-loop": Preset(
        envs=(IP_20K,),
        algos=(),
        hyperparam_overrides=dict(imagination="closed_loop", denoiser="causal_mlp", n_sampling_steps=16),
        variants=recorded_variants("ip-closed-loop"),
    ),
}
