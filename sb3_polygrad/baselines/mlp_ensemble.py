"""MBPO's world model: an ensemble of probabilistic MLPs, each predicting a Gaussian over the next step."""

import itertools

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_polygrad.baselines.base import ComparisonWorldModel, one_step_rollout
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import GuidancePolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples

# Shape letters: ``E`` ensemble members, ``N`` samples, ``I``/``F`` layer input/output sizes.

# L2 weight decay of each layer in MBPO (Janner et al. 2019; jannerm/mbpo and Xingyu-Lin/mbpo_pytorch), input to output.
MBPO_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


class EnsembleLinear(nn.Module):
    """
    ``E`` independent linear layers applied in one batched matmul.

    :param n_members: E
    :param in_features: I
    :param out_features: F
    """

    def __init__(self, n_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(th.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(th.zeros(n_members, 1, out_features))
        # Truncated normal with std 1 / (2 sqrt(I)), MBPO's initialisation.
        nn.init.trunc_normal_(self.weight, std=1.0 / (2.0 * in_features**0.5))

    def forward(self, x: th.Tensor) -> th.Tensor:
        """:param x: inputs, shape (E, N, I)
        :return: outputs, shape (E, N, F)"""
        return th.baddbmm(self.bias, x, self.weight)


class MLPEnsemble(ComparisonWorldModel):
    """
    The probabilistic ensemble of MBPO: ``n_members`` MLPs (SiLU) map normalised ``[s_k, a_k]`` to a diagonal Gaussian
    over the normalised ``(s_{k+1} - s_k, r_k, d_k)``, trained with the Gaussian negative log-likelihood, MBPO's learned
    soft bounds on the log-variance and per-layer weight decay. Each member trains on its own bootstrap resample of
    every batch. Imagination picks a random elite member per trajectory and step and samples from its Gaussian; the
    terminal flag is its mean thresholded at 0.5 (MBPO uses the env's known termination function instead, which a
    learned-model comparison cannot assume).

    Elites are chosen by ``select_elites`` on held-out windows; until then they are the first ``n_elites`` members.

    :param obs_dim: O
    :param action_dim: A
    :param n_members: networks in the ensemble (MBPO: 7)
    :param n_elites: members used for imagination (MBPO: 5)
    :param hidden_dims: hidden layer sizes (MBPO: four of 200)
    :param learning_rate: Adam rate (MBPO: 1e-3)
    :param weight_decays: L2 coefficient of each layer, ``len(hidden_dims) + 1`` values (``None``: MBPO's for four
        hidden layers, else none)
    """

    elite_indices: th.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        n_members: int = 7,
        n_elites: int = 5,
        hidden_dims: tuple[int, ...] = (200, 200, 200, 200),
        learning_rate: float = 1e-3,
        weight_decays: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__(obs_dim, action_dim, train_horizon=2)
        if not 0 < n_elites <= n_members:
            raise ValueError(f"n_elites must be in [1, n_members={n_members}], got {n_elites}")
        if weight_decays is None:
            weight_decays = MBPO_WEIGHT_DECAYS if len(hidden_dims) == 4 else (0.0,) * (len(hidden_dims) + 1)
        if len(weight_decays) != len(hidden_dims) + 1:
            raise ValueError(f"weight_decays needs {len(hidden_dims) + 1} values, got {len(weight_decays)}")
        self.n_members = n_members
        self.n_elites = n_elites
        self.weight_decays = weight_decays
        self._normalizer = TransitionNormalizer(obs_dim, action_dim)
        out_dim = obs_dim + 2
        sizes = [obs_dim + action_dim, *hidden_dims, 2 * out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(n_members, i, o) for i, o in itertools.pairwise(sizes))
        self.max_logvar = nn.Parameter(th.full((out_dim,), 0.5))
        self.min_logvar = nn.Parameter(th.full((out_dim,), -10.0))
        self.register_buffer("elite_indices", th.arange(n_elites))
        self.optimizer = th.optim.Adam(self.parameters(), lr=learning_rate)

    @property
    def normalizer(self) -> TransitionNormalizer:
        return self._normalizer

    def _forward(self, inputs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """:param inputs: normalised ``[s, a]`` per member, shape (E, N, O + A)
        :return: mean and log-variance of the normalised ``(delta s, r, d)``, each shape (E, N, O + 2)"""
        h = inputs
        for layer in self.layers[:-1]:
            h = F.silu(layer(h))
        mean, logvar = self.layers[-1](h).chunk(2, dim=-1)
        # MBPO's soft bounds: the log-variance stays inside learned limits with a smooth (softplus) approach.
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def _inputs_targets(self, batch: WindowSamples) -> tuple[th.Tensor, th.Tensor]:
        obs_n = self.normalizer.observations.normalize(batch.observations)  # (B, 2, O)
        inputs = th.cat([obs_n[:, 0], self.normalizer.actions.normalize(batch.actions[:, 0])], dim=-1)  # (B, O + A)
        row0 = self.normalizer.pack(batch.observations[:, :1], batch.rewards[:, :1], batch.terminals[:, :1])[:, 0]
        targets = th.cat([obs_n[:, 1] - obs_n[:, 0], row0[:, self.obs_dim :]], dim=-1)  # (B, O + 2)
        return inputs, targets

    def train_step(self, batch: WindowSamples) -> dict[str, float]:
        inputs, targets = self._inputs_targets(batch)
        # A bootstrap resample of the batch for each member, so the members disagree where data are scarce.
        index = th.randint(0, inputs.shape[0], (self.n_members, inputs.shape[0]), device=inputs.device)  # (E, B)
        mean, logvar = self._forward(inputs[index])
        nll = ((mean - targets[index]).square() * (-logvar).exp() + logvar).mean(dim=(1, 2)).sum()
        bound = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        weights = [param for name, param in self.layers.named_parameters() if name.endswith("weight")]
        decay = sum(
            (wd * 0.5 * w.square().sum() for wd, w in zip(self.weight_decays, weights, strict=True)), nll.new_zeros(())
        )
        loss = nll + bound + decay
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"world_model_loss": nll.item() / self.n_members}

    @th.no_grad()
    def select_elites(self, batch: WindowSamples) -> th.Tensor:
        """
        Keep the ``n_elites`` members with the lowest mean squared error of their mean on held-out windows (MBPO).

        :param batch: held-out windows of 2 rows
        :return: the MSE of each member, shape (E,)
        """
        inputs, targets = self._inputs_targets(batch)
        mean, _ = self._forward(inputs.expand(self.n_members, -1, -1))
        mse = (mean - targets).square().mean(dim=(1, 2))
        self.elite_indices.copy_(mse.argsort()[: self.n_elites])
        return mse

    def _step(self, states: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        obs_n = self.normalizer.observations.normalize(states[:, -1])
        inputs = th.cat([obs_n, self.normalizer.actions.normalize(actions[:, -1])], dim=-1)  # (B, O + A)
        mean, logvar = self._forward(inputs.expand(self.n_members, -1, -1))  # (E, B, O + 2) each
        batch = th.arange(inputs.shape[0], device=inputs.device)
        member = self.elite_indices[th.randint(0, self.n_elites, (inputs.shape[0],), device=inputs.device)]
        mean, std = mean[member, batch], (0.5 * logvar[member, batch]).exp()  # (B, O + 2)
        sample = mean + std * th.randn_like(mean)
        next_state = self.normalizer.observations.unnormalize(obs_n + sample[:, : self.obs_dim])
        reward = self.normalizer.rewards.unnormalize(sample[:, self.obs_dim : self.obs_dim + 1])[:, 0]
        terminal = self.normalizer.terminals.unnormalize(mean[:, self.obs_dim + 1 :])[:, 0]
        return next_state, reward, (terminal > 0.5).float()

    def imagine(self, start_states: th.Tensor, policy: GuidancePolicy, horizon: int) -> ImaginedTrajectory:
        return one_step_rollout(start_states, policy, horizon, self._step)
