import numpy as np
import torch as th

from sb3_polygrad import PolyGRAD
from sb3_polygrad.callbacks import WorldModelEvaluationCallback


def run(seed: int, kwargs: dict, callback: WorldModelEvaluationCallback | None = None) -> tuple[np.ndarray, float, PolyGRAD]:
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=seed, **kwargs)
    model.learn(300, callback=callback)
    obs = np.linspace(-0.2, 0.2, 40).reshape(10, 4)
    actions, _ = model.predict(obs, deterministic=True)
    assert model.log_guidance_scale is not None
    return actions, float(model.replay_buffer.rewards.sum() + model.log_guidance_scale.item()), model


def test_same_seed_same_run(tiny_kwargs):
    a, b, c = run(1, tiny_kwargs), run(1, tiny_kwargs), run(2, tiny_kwargs)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])


def test_world_model_evaluation_leaves_the_run_unchanged(tiny_kwargs):
    # The open-loop evaluation samples windows and diffusion noise from its own generators.
    plain = run(1, tiny_kwargs)
    evaluated = run(1, tiny_kwargs, WorldModelEvaluationCallback(eval_freq=100, n_trajectories=8))
    assert np.array_equal(plain[0], evaluated[0]) and plain[1] == evaluated[1]
    # every weight of policy and world model, to the bit
    for module in ("policy", "world_model"):
        plain_state, evaluated_state = getattr(plain[2], module).state_dict(), getattr(evaluated[2], module).state_dict()
        assert all(th.equal(plain_state[key], evaluated_state[key]) for key in plain_state), module
