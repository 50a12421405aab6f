import numpy as np
import pytest
import torch as th

from sb3_polygrad.world_model.normalization import RunningNormalizer


def test_incremental_stats_match_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4)) * np.array([1, 10, 0.1, 5])
    norm = RunningNormalizer((4,))
    for chunk in np.array_split(data, [1, 7, 100, 555, 556]):  # uneven batches, one of a single row
        norm.update(th.as_tensor(chunk))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), data.var(axis=0), rtol=1e-10)
    x = th.as_tensor(data[:5], dtype=th.float32)
    expected = (data[:5] - data.mean(axis=0)) / (data.std(axis=0) + 1e-6)
    np.testing.assert_allclose(norm.normalize(x).numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(norm.unnormalize(norm.normalize(x)).numpy(), data[:5], rtol=1e-4, atol=1e-4)


def test_constant_dimension_is_only_centred():
    norm = RunningNormalizer((2,))
    norm.update(th.tensor([[1.0, 0.0], [1.0, 2.0]]))
    out = norm.normalize(th.tensor([[0.0, 2.0]]))
    assert out[0, 0].item() == pytest.approx(-1.0)  # std 0: scale 1, not 1 / 1e-6
    assert out[0, 1].item() == pytest.approx(1.0, rel=1e-5)


def test_state_dict_round_trip():
    a, b = RunningNormalizer((3,)), RunningNormalizer((3,))
    a.update(th.randn(50, 3) * 4 + 1)
    b.load_state_dict(a.state_dict())
    x = th.randn(7, 3)
    assert th.equal(a.normalize(x), b.normalize(x))


def test_nan_is_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        RunningNormalizer((2,)).update(th.tensor([[1.0, float("nan")]]))
