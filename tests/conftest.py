import warnings

import pytest
import torch as th

# One thread: the CI machine has 2 shared cores, and torch's default of 2 threads is many times slower there.
th.set_num_threads(1)
warnings.filterwarnings("ignore", category=DeprecationWarning, module="gymnasium")


@pytest.fixture
def tiny_kwargs() -> dict:
    """A PolyGRAD configuration small enough to learn a few hundred steps in seconds."""
    return dict(
        learning_starts=100,
        world_model_warmup=20,
        batch_size=16,
        imagination_batch_size=64,
        horizon=4,
        n_diffusion_steps=8,
        train_freq=4,
        gradient_steps=1,
        world_model_kwargs=dict(denoiser_kwargs=dict(hidden_dim=16, num_layers=1, embed_dim=16)),
        policy_kwargs=dict(net_arch=[16]),
    )
