"""Per-dimension z-score normaliser whose statistics are updated incrementally as real data arrives."""

import torch as th
from torch import nn


class RunningNormalizer(nn.Module):
    """
    ``(x - mean) / (std + eps)`` per dimension, with mean and variance merged batch by batch (Chan et al. 1979).

    The reference recomputes its statistics over the whole replay buffer after every episode, an O(buffer) pass that also
    makes the denoiser's targets jump. Merging each new batch of real transitions costs O(batch) and gives the same
    statistics over all data seen (not only the data still in a wrapped ring buffer). Statistics are float64 buffers, so
    they are saved and loaded with the world model's ``state_dict``.

    :param shape: shape of one sample
    :param eps: added to the standard deviation (the reference's 1e-6)
    :param constant_threshold: a dimension whose std is below this is treated as constant and only centred
    """

    mean: th.Tensor
    var: th.Tensor
    count: th.Tensor
    _mean32: th.Tensor
    _std32: th.Tensor

    def __init__(self, shape: tuple[int, ...], eps: float = 1e-6, constant_threshold: float = 1e-4) -> None:
        super().__init__()
        self.eps = eps
        self.constant_threshold = constant_threshold
        self.register_buffer("mean", th.zeros(shape, dtype=th.float64))
        self.register_buffer("var", th.ones(shape, dtype=th.float64))
        self.register_buffer("count", th.zeros((), dtype=th.float64))
        # float32 copies used on the hot path, refreshed after each update
        self.register_buffer("_mean32", th.zeros(shape), persistent=False)
        self.register_buffer("_std32", th.ones(shape), persistent=False)

    @th.no_grad()
    def update(self, x: th.Tensor) -> None:
        """
        Merge a batch of samples into the statistics.

        :param x: samples, shape (n, *shape)
        """
        x = x.to(device=self.mean.device, dtype=th.float64).reshape(-1, *self.mean.shape)
        if not th.isfinite(x).all():
            raise ValueError("RunningNormalizer.update got a non-finite value (NaN or inf) in its input")
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)
        self._refresh()

    def _refresh(self) -> None:
        self._mean32.copy_(self.mean)
        std = self.var.sqrt()
        # A (near-)constant dimension is only centred, as scikit-learn's StandardScaler does. The reference divides by
        # std + 1e-6, which maps the padding reward 0 of an env with constant reward 1 (InvertedPendulum) to -1e6.
        self._std32.copy_(th.where(std < self.constant_threshold, th.ones_like(std), std + self.eps))

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh()

    @property
    def std(self) -> th.Tensor:
        """The divisor of ``normalize`` (float32): std + eps, or 1 for a constant dimension."""
        return self._std32

    def normalize(self, x: th.Tensor) -> th.Tensor:
        """:param x: raw values, shape (..., *shape)
        :return: normalised values, same shape"""
        return (x - self._mean32) / self._std32

    def unnormalize(self, x: th.Tensor) -> th.Tensor:
        """:param x: normalised values, shape (..., *shape)
        :return: raw values, same shape"""
        return x * self._std32 + self._mean32

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}, count={int(self.count.item())}"


class TransitionNormalizer(nn.Module):
    """
    The four normalisers of the world model (states, actions, rewards, terminals) and the packing of a diffused row
    ``x_k = [s_k, r_k, d_k]``.

    :param obs_dim: size of a state
    :param action_dim: size of an action
    :param eps: see ``RunningNormalizer``
    """

    def __init__(self, obs_dim: int, action_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.observations = RunningNormalizer((obs_dim,), eps)
        self.actions = RunningNormalizer((action_dim,), eps)
        self.rewards = RunningNormalizer((1,), eps)
        self.terminals = RunningNormalizer((1,), eps)

    def update(self, observations: th.Tensor, actions: th.Tensor, rewards: th.Tensor, terminals: th.Tensor) -> None:
        """
        Merge a batch of real transitions into the statistics (padding must not be passed here).

        :param observations: shape (n, obs_dim)
        :param actions: shape (n, action_dim)
        :param rewards: shape (n,)
        :param terminals: shape (n,), 0 or 1
        """
        self.observations.update(observations)
        self.actions.update(actions)
        self.rewards.update(rewards.reshape(-1, 1))
        self.terminals.update(terminals.reshape(-1, 1))

    def pack(self, observations: th.Tensor, rewards: th.Tensor, terminals: th.Tensor) -> th.Tensor:
        """Normalise and concatenate raw ``(B, H, obs_dim)``, ``(B, H)``, ``(B, H)`` into ``x`` of shape (B, H, D)."""
        return th.cat(
            [
                self.observations.normalize(observations),
                self.rewards.normalize(rewards.unsqueeze(-1)),
                self.terminals.normalize(terminals.unsqueeze(-1)),
            ],
            dim=-1,
        )

    def unpack(self, x: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Split and unnormalise ``x`` (B, H, D) into raw states (B, H, obs_dim), rewards (B, H) and terminals (B, H)
        (terminals stay continuous; threshold them yourself)."""
        obs, rew, term = x.split([self.obs_dim, 1, 1], dim=-1)
        return (
            self.observations.unnormalize(obs),
            self.rewards.unnormalize(rew).squeeze(-1),
            self.terminals.unnormalize(term).squeeze(-1),
        )
