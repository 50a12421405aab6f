"""The world-model study: the world models PolyGRAD is compared with behind one interface, and the fixed datasets they
learn from (``datasets.py``)."""

from sb3_polygrad.baselines.autoregressive_diffusion import AutoregressiveDiffusion
from sb3_polygrad.baselines.base import ComparisonWorldModel, one_step_rollout, sample_actions
from sb3_polygrad.baselines.evaluation import open_loop_evaluation, time_imagination
from sb3_polygrad.baselines.mlp_ensemble import MLPEnsemble
from sb3_polygrad.baselines.polygrad_world_model import PolyGRADWorldModel
from sb3_polygrad.baselines.transformer_world_model import TransformerWorldModel

__all__ = [
    "AutoregressiveDiffusion",
    "ComparisonWorldModel",
    "MLPEnsemble",
    "PolyGRADWorldModel",
    "TransformerWorldModel",
    "one_step_rollout",
    "open_loop_evaluation",
    "sample_actions",
    "time_imagination",
]
