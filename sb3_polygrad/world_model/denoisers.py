"""Denoisers of the diffusion world model: ``forward(x_t, actions, t) -> x0_hat`` (or predicted noise).

A denoiser knows nothing of the schedule, the policy or normalisation. Shape letters: ``B`` batch, ``H`` horizon,
``D`` transition dim (obs_dim + 2: state, reward, terminal), ``A`` action dim, ``E``/``W`` widths.
"""

import math

import torch as th
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Denoiser(nn.Module):
    """
    Base class: the dimensions every denoiser exposes.

    :param transition_dim: D, size of one diffused row ``[state, reward, terminal]``
    :param action_dim: A, size of one action
    :param horizon: H, the number of rows the denoiser takes (the transformer takes any H up to this one)
    """

    fixed_horizon: bool = True
    # The state of row k depends only on the noisy states of rows <= k and on the actions of rows < k, so that
    # `DiffusionWorldModel.imagine_sequential` reaches its fixed point in H - 1 passes.
    causal_states: bool = False
    # `embed_time` also takes one diffusion step per row, shape (B, H): the denoiser can be trained and sampled with an
    # independent noise level per time step (`DiffusionWorldModel(per_row_noise=True)`, closed-loop imagination).
    supports_per_row_noise: bool = False

    def __init__(self, transition_dim: int, action_dim: int, horizon: int) -> None:
        super().__init__()
        if horizon < 2:
            raise ValueError(f"horizon must be >= 2 (a start state and at least one imagined step), got {horizon}")
        self.transition_dim = transition_dim
        self.action_dim = action_dim
        self.horizon = horizon

    def embed_time(self, t: th.Tensor) -> th.Tensor | None:
        """
        The diffusion-step embedding, split from ``denoise`` so that a sampler can compute it once per step for the
        whole batch (one row, broadcast) or once per run for every step, instead of once per sample.

        :param t: diffusion step indices, integer, shape (B,)
        :return: embeddings, shape (B, E), or ``None`` for a denoiser that ignores the step
        """
        raise NotImplementedError

    def denoise(self, x_t: th.Tensor, actions: th.Tensor, time_embedding: th.Tensor | None) -> th.Tensor:
        """
        :param x_t: noisy transitions, shape (B, H, D)
        :param actions: actions (scaled by ``sqrt(alpha_bar_t)`` in PolyGRAD), shape (B, H, A)
        :param time_embedding: ``embed_time`` of the samples' steps, shape (B, E) or (1, E) for one step shared by all
        :return: prediction for the clean transitions (or the noise), shape (B, H, D)
        """
        raise NotImplementedError

    def prepare_sampling(self, t: th.Tensor) -> tuple[th.Tensor | None, tuple[th.Tensor, ...]]:
        """
        What :meth:`denoise_sampling` needs that depends only on the weights and the diffusion steps, which a sampler
        computes once per run (the weights are fixed while it samples). By default the step embedding, nothing shared.

        :param t: the run's diffusion steps, integer, shape (K,)
        :return: one row per step, shape (K, C) (``None`` for a denoiser that ignores the step), and tensors shared by
            all steps
        """
        return self.embed_time(t), ()

    def denoise_sampling(
        self,
        x_t: th.Tensor,
        actions: th.Tensor,
        conditioning: th.Tensor | None,
        shared: tuple[th.Tensor, ...],
        rows: int | None = None,
    ) -> th.Tensor:
        """
        :meth:`denoise` as a sampler calls it: the same function of the inputs (to float rounding), free to be computed
        differently when every sample shares one step. By default ``denoise`` itself.

        :param x_t: noisy transitions, shape (B, H, D)
        :param actions: actions (scaled by ``sqrt(alpha_bar_t)``), shape (B, H, A)
        :param conditioning: the step's row of :meth:`prepare_sampling`'s per-step tensor, shape (1, C)
        :param shared: :meth:`prepare_sampling`'s shared tensors
        :param rows: only the first ``rows`` rows of the prediction are read (``None``: all): a denoiser with causal
            states may skip the work of the others and leave them at zero
        :return: prediction for the clean transitions (or the noise), shape (B, H, D)
        """
        return self.denoise(x_t, actions, conditioning)

    def forward(self, x_t: th.Tensor, actions: th.Tensor, t: th.Tensor | None = None) -> th.Tensor:
        """
        :param x_t: noisy transitions, shape (B, H, D)
        :param actions: actions (scaled by ``sqrt(alpha_bar_t)`` in PolyGRAD), shape (B, H, A)
        :param t: diffusion step of each sample, integer, shape (B,) (``None`` only for a denoiser that ignores it)
        :return: prediction for the clean transitions (or the noise), shape (B, H, D)
        """
        return self.denoise(x_t, actions, None if t is None else self.embed_time(t))


class RandomFourierTimeEmbedding(nn.Module):
    """
    ``[t, sin(2 pi w t), cos(2 pi w t)]`` with fixed random frequencies ``w ~ N(0, 1)``, then a two-layer MLP (SynthER).

    The frequencies are a persistent buffer, so a loaded model sees the same features it was trained with.

    :param out_dim: embedding size
    :param n_frequencies: number of random frequencies
    """

    frequencies: th.Tensor

    def __init__(self, out_dim: int, n_frequencies: int = 8) -> None:
        super().__init__()
        self.register_buffer("frequencies", th.randn(n_frequencies))
        self.mlp = nn.Sequential(nn.Linear(2 * n_frequencies + 1, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: th.Tensor) -> th.Tensor:
        """
        :param t: diffusion steps, integer, any shape (...)
        :return: their embeddings, shape (..., E)
        """
        # The MLP runs once per distinct step, not once per sample: a batch holds at most N distinct steps, against
        # B x H samples with a noise level per row (where this MLP was 40% of the causal denoiser's training forward).
        steps, index = th.unique(t, return_inverse=True)
        steps = steps.float().unsqueeze(-1)  # (S, 1); the raw step index, as the reference
        phase = 2 * math.pi * steps * self.frequencies  # (S, F)
        return self.mlp(th.cat([steps, phase.sin(), phase.cos()], dim=-1))[index]  # (..., E)


class ResidualBlock(nn.Module):
    """``h + Linear(ReLU(LayerNorm(h)))``: a pre-norm residual MLP block.

    :param width: W, input and output size"""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)

    def forward(self, h: th.Tensor) -> th.Tensor:
        return h + self.linear(th.relu(self.norm(h)))


class ResidualMLPDenoiser(Denoiser):
    """
    The paper's default denoiser (adapted from SynthER): the whole window, flattened, through a residual MLP.

    Tied to one horizon, because the window is flattened into a fixed-size vector.

    :param transition_dim: D
    :param action_dim: A
    :param horizon: H
    :param hidden_dim: W, width of the residual blocks (paper: 1024)
    :param num_layers: number of residual blocks (paper: 6)
    :param embed_dim: floor of the input embedding size ``E = max(H * (D + A), embed_dim)``
    """

    def __init__(
        self,
        transition_dim: int,
        action_dim: int,
        horizon: int,
        hidden_dim: int = 1024,
        num_layers: int = 6,
        embed_dim: int = 128,
    ) -> None:
        super().__init__(transition_dim, action_dim, horizon)
        self._build(max(horizon * (transition_dim + action_dim), embed_dim), hidden_dim, num_layers)

    def _build(self, embed: int, hidden_dim: int, num_layers: int) -> None:
        """Create ``proj``, ``time_embedding``, ``input_layer``, ``blocks`` and ``head`` (a subclass may mask them)."""
        self.proj = nn.Linear(self.horizon * (self.transition_dim + self.action_dim), embed)
        self.time_embedding = RandomFourierTimeEmbedding(embed)
        self.input_layer = nn.Linear(embed, hidden_dim)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden_dim) for _ in range(num_layers)])
        out_dim = self.horizon * self.transition_dim
        self.head = nn.Sequential(nn.LayerNorm(hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))

    def embed_time(self, t: th.Tensor) -> th.Tensor:
        return self.time_embedding(t)

    def denoise(self, x_t: th.Tensor, actions: th.Tensor, time_embedding: th.Tensor | None) -> th.Tensor:
        assert time_embedding is not None, "the MLP denoiser is conditioned on the diffusion step"
        h = self.proj(self._flat_window(x_t, actions)) + time_embedding  # (B, E)
        return self._windows_from_hidden(self.input_layer(h))

    def _flat_window(self, x_t: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """The whole window as one vector per sample, (B, H * (D + A))."""
        return rearrange(th.cat([x_t, actions], dim=-1), "b h c -> b (h c)")

    def _windows_from_hidden(self, h: th.Tensor) -> th.Tensor:
        """The residual blocks and the head, from the input layer's output (B, W) to windows (B, H, D)."""
        return rearrange(self.head(self.blocks(h)), "b (h d) -> b h d", h=self.horizon)

    # While sampling, the input projection and the input layer fold into one layer: only the step embedding is added
    # between the two linear maps, so ``input_layer(proj(v) + e) = (W_in W_proj) v + input_layer(proj.bias + e)``. The
    # step's part and the folded weight are computed once per run: at the CPU size (70 -> 128 -> 256) this removes
    # about 8% of a step's matmul FLOPs (benchmarks/imagination_speed.py).

    def prepare_sampling(self, t: th.Tensor) -> tuple[th.Tensor, tuple[th.Tensor, ...]]:
        w_in, w_proj = self.input_weights()
        steps = F.linear(self.embed_time(t) + self.proj.bias, w_in, self.input_layer.bias)  # (K, W)
        return steps, ((w_in @ w_proj).T.contiguous(),)  # (H * (D + A), W)

    def denoise_sampling(
        self,
        x_t: th.Tensor,
        actions: th.Tensor,
        conditioning: th.Tensor | None,
        shared: tuple[th.Tensor, ...],
        rows: int | None = None,
    ) -> th.Tensor:
        assert conditioning is not None, "the MLP denoiser is conditioned on the diffusion step"
        return self._windows_from_hidden(th.addmm(conditioning, self._flat_window(x_t, actions), shared[0]))

    def input_weights(self) -> tuple[th.Tensor, th.Tensor]:
        """The weights of the input layer and of the input projection, shapes (W, E) and (E, H * (D + A))."""
        return self.input_layer.weight, self.proj.weight


def sinusoidal_embedding(t: th.Tensor, dim: int) -> th.Tensor:
    """Transformer-style sinusoidal features of a scalar step index.

    :param t: step indices, shape (B,)
    :param dim: number of features (even)
    :return: features, shape (B, dim)"""
    half = dim // 2
    freqs = th.exp(-math.log(10_000.0) * th.arange(half, device=t.device, dtype=th.float32) / half)
    phase = t.float().unsqueeze(-1) * freqs  # (B, dim / 2)
    return th.cat([phase.sin(), phase.cos()], dim=-1)


class TransformerDenoiser(Denoiser):
    """
    One token per time step of the window: ``[x_k, a_k]`` embedded, plus a learned position and the diffusion-step
    embedding, through pre-LayerNorm transformer blocks (nanoGPT layout, built from ``nn.TransformerEncoderLayer``).

    Unlike the MLP it takes any horizon up to ``horizon``, and its size does not grow with H.

    Attention is causal by default (row k sees only rows <= k), as in the reference, although a denoiser of a whole
    trajectory could also read the noisy future rows. Chosen by measurement
    (``python -m benchmarks.world_models --preset quick --attention-study``, results in
    ``benchmarks/results/world_models_quick_attention.md``; Hopper-v4, one seed, 0.11M parameters, 3000 updates): open-loop
    state MSE 0.12 / 0.30 / 0.64 at steps 1 / 5 / 10 with causal attention, 0.21 / 0.93 / 1.69 without.

    :param transition_dim: D
    :param action_dim: A
    :param horizon: the longest window the model takes (size of the position embedding)
    :param d_model: token width (reference: 312)
    :param n_layers: number of transformer blocks (reference: 6)
    :param n_heads: attention heads (reference: 4)
    :param causal: mask attention to earlier rows only, as the reference
    :param time_conditioned: add the diffusion-step embedding; ``False`` gives the deterministic transformer world model
        of the baselines, with the same body
    """

    fixed_horizon = False

    def __init__(
        self,
        transition_dim: int,
        action_dim: int,
        horizon: int,
        d_model: int = 312,
        n_layers: int = 6,
        n_heads: int = 4,
        causal: bool = True,
        time_conditioned: bool = True,
    ) -> None:
        super().__init__(transition_dim, action_dim, horizon)
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.causal = causal
        self.token_embedding = nn.Linear(transition_dim + action_dim, d_model)
        self.position_embedding = nn.Parameter(th.zeros(horizon, d_model))
        self.time_mlp = (
            nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model)) if time_conditioned else None
        )
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        # enable_nested_tensor only applies to padding masks, which we never use
        self.blocks = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = nn.Linear(d_model, transition_dim)
        nn.init.normal_(self.position_embedding, std=0.02)

    def embed_time(self, t: th.Tensor) -> th.Tensor | None:
        return None if self.time_mlp is None else self.time_mlp(sinusoidal_embedding(t, self.d_model))

    def denoise(self, x_t: th.Tensor, actions: th.Tensor, time_embedding: th.Tensor | None) -> th.Tensor:
        horizon = x_t.shape[1]
        h = self.token_embedding(th.cat([x_t, actions], dim=-1)) + self.position_embedding[:horizon]  # (B, H, d_model)
        if self.time_mlp is not None:
            assert time_embedding is not None, "a time-conditioned transformer needs the diffusion step t"
            h = h + time_embedding.unsqueeze(1)  # broadcast over H
        mask = nn.Transformer.generate_square_subsequent_mask(horizon, device=x_t.device) if self.causal else None
        return self.head(self.blocks(h, mask=mask, is_causal=self.causal))  # (B, H, D)
