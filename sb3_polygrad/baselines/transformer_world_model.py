"""Transformer world model: deterministic next-step prediction over a causal context of past steps (section 2.2)."""

import torch as th
from torch.nn import functional as F

from sb3_polygrad.baselines.base import ComparisonWorldModel, one_step_rollout
from sb3_polygrad.world_model.denoisers import TransformerDenoiser
from sb3_polygrad.world_model.normalization import TransitionNormalizer
from sb3_polygrad.world_model.sampler import GuidancePolicy
from sb3_polygrad.world_model.types import ImaginedTrajectory, WindowSamples


class TransformerWorldModel(ComparisonWorldModel):
    """
    The paper's transformer baseline: PolyGRAD's transformer body without the diffusion-time input and with causal
    attention. Token k holds the normalised state s_k and action a_k; its output is ``(s_{k+1} - s_k, r_k, d_k)`` in
    normalised units, so every token of a window is a training example, and imagination feeds the last
    ``context_length`` steps back in, one step at a time. Trained with MSE (Adam, reference rate 1e-4).

    Differences from the reference, which reads a row ``[s_k, r_k, d_k]`` and predicts the next row: there ``r_{k+1}``
    is predicted before ``a_{k+1}`` is known, and the first reward is copied from the data; here ``r_k, d_k`` come with
    ``a_k`` and the state is predicted as a change. The body's input row has the size of its output row, so the reward
    and terminal slots of each input token are zero.

    :param obs_dim: O
    :param action_dim: A
    :param context_length: C, past steps the model attends to (reference: 15); training windows have C + 1 rows
    :param d_model: token width (reference: 312)
    :param n_layers: transformer blocks (reference: 6)
    :param n_heads: attention heads (reference: 4)
    :param learning_rate: Adam rate (reference: 1e-4)
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        context_length: int = 15,
        d_model: int = 312,
        n_layers: int = 6,
        n_heads: int = 4,
        learning_rate: float = 1e-4,
    ) -> None:
        super().__init__(obs_dim, action_dim, train_horizon=context_length + 1)
        self.context_length = context_length
        self._normalizer = TransitionNormalizer(obs_dim, action_dim)
        self.body = TransformerDenoiser(
            obs_dim + 2, action_dim, context_length, d_model, n_layers, n_heads, causal=True, time_conditioned=False
        )
        self.optimizer = th.optim.Adam(self.body.parameters(), lr=learning_rate)

    @property
    def normalizer(self) -> TransitionNormalizer:
        return self._normalizer

    def _predict(self, states: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """:param states: raw states, shape (B, T, O)
        :param actions: raw actions, shape (B, T, A)
        :return: normalised ``[s_{k+1}, r_k, d_k]`` for every token, shape (B, T, O + 2)"""
        obs_n = self.normalizer.observations.normalize(states)
        tokens = th.cat([obs_n, obs_n.new_zeros(*obs_n.shape[:2], 2)], dim=-1)  # (B, T, O + 2)
        out = self.body(tokens, self.normalizer.actions.normalize(actions))
        return th.cat([obs_n + out[..., : self.obs_dim], out[..., self.obs_dim :]], dim=-1)

    def train_step(self, batch: WindowSamples) -> dict[str, float]:
        # Tokens are rows 0..C-1; the targets pair the next row's state with this row's reward and terminal.
        target = self.normalizer.pack(batch.observations, batch.rewards, batch.terminals)  # (B, C + 1, O + 2)
        target = th.cat([target[:, 1:, : self.obs_dim], target[:, :-1, self.obs_dim :]], dim=-1)  # (B, C, O + 2)
        loss = F.mse_loss(self._predict(batch.observations[:, :-1], batch.actions[:, :-1]), target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"world_model_loss": loss.item()}

    def _step(self, states: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        context = -self.context_length
        prediction = self._predict(states[:, context:], actions[:, context:])[:, -1:]  # (B, 1, O + 2)
        next_state, reward, terminal = self.normalizer.unpack(prediction)
        return next_state[:, 0], reward[:, 0], (terminal[:, 0] > 0.5).float()

    def imagine(self, start_states: th.Tensor, policy: GuidancePolicy, horizon: int) -> ImaginedTrajectory:
        return one_step_rollout(start_states, policy, horizon, self._step)
