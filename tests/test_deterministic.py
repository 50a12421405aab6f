import numpy as np

from sb3_polygrad import PolyGRAD


def run(seed: int, kwargs: dict) -> tuple[np.ndarray, float]:
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=seed, **kwargs)
    model.learn(300)
    obs = np.linspace(-0.2, 0.2, 40).reshape(10, 4)
    actions, _ = model.predict(obs, deterministic=True)
    return actions, float(model.replay_buffer.rewards.sum() + model.log_guidance_scale.item())


def test_same_seed_same_run(tiny_kwargs):
    a, b, c = run(1, tiny_kwargs), run(1, tiny_kwargs), run(2, tiny_kwargs)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])


def test_world_model_evaluation_leaves_the_run_unchanged(tiny_kwargs):
    # The open-loop evaluation samples windows and diffusion noise from its own generators.
    plain = run(1, tiny_kwargs)
    evaluated = run(1, {**tiny_kwargs, "world_model_eval_freq": 100, "world_model_eval_trajectories": 8})
    assert np.array_equal(plain[0], evaluated[0]) and plain[1] == evaluated[1]
