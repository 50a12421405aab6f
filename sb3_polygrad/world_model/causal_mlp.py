"""A residual-MLP denoiser of whole windows whose outputs only see the past: MADE-style masks (Germain et al. 2015).

Why: the paper's MLP denoiser sees the whole flattened window, actions included. In the data every action was chosen
by a behaviour policy from the state it was taken in, so the denoiser learns to read a state off the actions that
follow it. Under guidance those actions are the *current* policy's, chosen from the imagined states, and the two
pulls agree on a trajectory that need not obey the dynamics: on InvertedPendulum the guided trajectories' one-step
state error was ~50x the error given the recorded actions, and replaying imagined actions in the simulator ended 94%
of the 9-step windows that imagination predicted to survive in 97% (``world_model/data_actions_*`` against
``world_model/*``). Masking every layer so that an output can only depend on earlier information removes that path:
the state of row k sees the noisy states of rows ``<= k`` and the actions, rewards and terminals of rows ``< k``; the
reward and terminal of row k (the outcome of action k) also see action k and the noisy state of row k + 1.

Shape letters: ``B`` batch, ``H`` horizon, ``D`` transition dim, ``A`` action dim, ``W`` width, ``E`` embedding size.
"""

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_polygrad.world_model.denoisers import RandomFourierTimeEmbedding, ResidualMLPDenoiser


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 mask ``mask[out, in] = degree_out >= degree_in``.

    :param in_degrees: degree of each input, shape (in,)
    :param out_degrees: degree of each output, shape (out,)
    """

    mask: th.Tensor

    def __init__(self, in_degrees: th.Tensor, out_degrees: th.Tensor) -> None:
        super().__init__(len(in_degrees), len(out_degrees))
        self.register_buffer("mask", (out_degrees[:, None] >= in_degrees[None, :]).float(), persistent=False)
        self._frozen: tuple[tuple[int, ...], th.Tensor] | None = None

    def masked_weight(self) -> th.Tensor:
        """
        The weight with the masked entries zeroed, shape (out, in).

        Without autograd (imagination, evaluation), the product is kept until the weight or the mask changes: a sampler
        calls the denoiser tens of times per imagination with the same weights. The key is the tensors' storage and
        in-place version counters, which every optimiser step, EMA update and ``load_state_dict`` bumps.
        """
        if th.is_grad_enabled():
            return self.weight * self.mask
        key = (self.weight.data_ptr(), self.weight._version, self.mask.data_ptr(), self.mask._version)
        if self._frozen is None or self._frozen[0] != key:
            self._frozen = (key, self.weight * self.mask)
        return self._frozen[1]

    def forward(self, x: th.Tensor) -> th.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class DegreeLayerNorm(nn.Module):
    """LayerNorm over each degree's units separately: a LayerNorm over all units would pass later information to earlier
    outputs through its mean and variance. Unit ``i`` has degree ``i % n_degrees`` (the hidden layout of
    ``CausalResidualMLPDenoiser``).

    Why the padded view: with that cyclic layout, zero-padding the units to ``R * n_degrees`` lays them out as
    ``(R, n_degrees)``, and each degree's statistics are a sum over ``R``; this is 2.5x faster on a CPU than the
    equivalent thin matmuls with a (W, n_degrees) one-hot matrix.

    :param width: number of units W (at least ``n_degrees``)
    :param n_degrees: number of degrees
    :param eps: added to the variance
    """

    counts: th.Tensor
    real: th.Tensor

    def __init__(self, width: int, n_degrees: int, eps: float = 1e-5) -> None:
        super().__init__()
        if width < n_degrees:
            raise ValueError(f"width {width} < n_degrees {n_degrees}: every degree needs a unit")
        self.width, self.n_rows = width, -(-width // n_degrees)
        self.pad = self.n_rows * n_degrees - width
        self.register_buffer("counts", th.bincount(th.arange(width) % n_degrees).float(), persistent=False)
        self.register_buffer("real", self._padded(th.ones(width)), persistent=False)  # 1 on units, 0 on padding
        self.weight = nn.Parameter(th.ones(width))
        self.bias = nn.Parameter(th.zeros(width))
        self.eps = eps

    def _padded(self, h: th.Tensor) -> th.Tensor:
        """(..., W) -> (..., R, n_degrees), zero-padded: column g holds the units of degree g."""
        return F.pad(h, (0, self.pad)).unflatten(-1, (self.n_rows, -1))

    def forward(self, h: th.Tensor) -> th.Tensor:
        normed = normalize_by_degree(self._padded(h), self.counts, self.real, -2, self.eps).flatten(-2)[..., : self.width]
        return normed * self.weight + self.bias


def normalize_by_degree(grouped: th.Tensor, counts: th.Tensor, real: th.Tensor, dim: int, eps: float) -> th.Tensor:
    """
    Zero mean and unit variance over each degree's units, of units zero-padded and grouped by degree (padding stays 0).

    :param grouped: the units, with the units of one degree along ``dim``, the degrees along another dimension
    :param counts: the number of real units of each degree, shaped to broadcast against the reduced ``grouped``
    :param real: 1 on real units, 0 on padding, shaped as ``grouped``'s last two dimensions
    :param dim: the dimension of one degree's units (-1 or -2)
    :param eps: added to the variance
    """
    centred = (grouped - grouped.sum(dim=dim, keepdim=True) / counts) * real
    var = centred.square().sum(dim=dim, keepdim=True) / counts
    return centred * th.rsqrt(var + eps)


class DegreeMajorLayout(nn.Module):
    """
    The hidden units of ``CausalResidualMLPDenoiser`` reordered degree by degree, each degree padded to the same number
    of units ``R`` (zero weights, zero norm parameters): the units of degrees ``< g`` are then the first ``g * R``, so
    that a forward pass restricted to the early degrees is a slice of every weight instead of a gather. A module only so
    that its index tensors move with the denoiser's device; it has no parameters and adds nothing to a state dict.

    :param width: number of units W, in the cyclic layout (unit ``i`` has degree ``i % n_degrees``)
    :param n_degrees: number of degrees
    """

    index: th.Tensor
    real: th.Tensor
    counts: th.Tensor

    def __init__(self, width: int, n_degrees: int) -> None:
        super().__init__()
        self.per_degree = -(-width // n_degrees)
        cyclic = th.arange(self.per_degree)[None, :] * n_degrees + th.arange(n_degrees)[:, None]  # (G, R)
        real = (cyclic < width).float()
        self.register_buffer("index", cyclic.clamp(max=width).flatten(), persistent=False)  # padding reads a zero
        self.register_buffer("real", real, persistent=False)
        self.register_buffer("counts", real.sum(dim=1, keepdim=True), persistent=False)

    def units(self, v: th.Tensor) -> th.Tensor:
        """(..., W) in the cyclic layout -> (..., G * R) in this one."""
        return F.pad(v, (0, 1)).index_select(-1, self.index)

    def weight(self, w: th.Tensor) -> th.Tensor:
        """A (W, W) weight between hidden units, both sides reordered."""
        return F.pad(w, (0, 1, 0, 1)).index_select(0, self.index).index_select(1, self.index)


class CausalResidualBlock(nn.Module):
    """``h + MaskedLinear(ReLU(DegreeLayerNorm(h)))`` on units of cyclic degrees (unit ``i`` has degree
    ``i % n_degrees``), degrees unchanged.

    :param width: number of units
    :param n_degrees: number of degrees"""

    def __init__(self, width: int, n_degrees: int) -> None:
        super().__init__()
        self.norm = DegreeLayerNorm(width, n_degrees)
        degrees = th.arange(width) % n_degrees
        self.linear = MaskedLinear(degrees, degrees)

    def forward(self, h: th.Tensor) -> th.Tensor:
        return h + self.linear(th.relu(self.norm(h)))


class CausalResidualMLPDenoiser(ResidualMLPDenoiser):
    """
    The residual MLP of ``ResidualMLPDenoiser`` with every layer masked so that each output sees only the past (see the
    module docstring). Degree ``k`` is time: the state of row k has degree k; the reward, terminal and action of row k
    have degree k + 1. An output sees the inputs of degree at most its own; hidden units cycle through the degrees.

    Same parameters and matmul FLOPs as the unmasked MLP (the masks and per-degree norms add about 20% to a CPU forward);
    each degree gets about ``W / (H + 1)`` of the hidden units.

    :param transition_dim: D
    :param action_dim: A
    :param horizon: H
    :param hidden_dim: W, width of the residual blocks (at least H + 1)
    :param num_layers: number of residual blocks
    :param embed_dim: floor of the input embedding size ``E = max(H * (D + A), embed_dim)`` (at least H + 1)
    """

    causal_states = True

    def _build(self, embed: int, hidden_dim: int, num_layers: int) -> None:
        horizon, n_degrees = self.horizon, self.horizon + 1
        if min(hidden_dim, embed) < n_degrees:
            raise ValueError(f"hidden_dim and embed_dim must be >= horizon + 1 = {n_degrees} (a unit per degree)")
        row = th.arange(horizon)[:, None]
        obs_dim = self.transition_dim - 2
        # Per row: [state (degree k), reward and terminal (k + 1)] then [action (k + 1)], flattened as in the MLP.
        transition_degrees = th.cat([row.expand(horizon, obs_dim), (row + 1).expand(horizon, 2)], dim=1)  # (H, D)
        in_degrees = th.cat([transition_degrees, (row + 1).expand(horizon, self.action_dim)], dim=1).reshape(-1)
        embed_degrees = th.arange(embed) % n_degrees
        hidden_degrees = th.arange(hidden_dim) % n_degrees
        self.proj = MaskedLinear(in_degrees, embed_degrees)
        # the window's inputs are in time order: those of degree < g are its first _inputs_below[g]
        self._inputs_below = [int((in_degrees < g).sum()) for g in range(n_degrees + 1)]
        self.sampling_layout = DegreeMajorLayout(hidden_dim, n_degrees)
        self.time_embedding = RandomFourierTimeEmbedding(embed)
        # With one noise level per row, an embedding unit of degree k carries the level of row k (the last row's for
        # degree H, the outcome of the last action): no output sees a later row's level, and with one level for the
        # whole window every unit carries that level, as in the unmasked MLP.
        self.register_buffer("embed_rows", embed_degrees.clamp(max=horizon - 1), persistent=False)
        self.input_layer = MaskedLinear(embed_degrees, hidden_degrees)
        self.blocks = nn.Sequential(*[CausalResidualBlock(hidden_dim, n_degrees) for _ in range(num_layers)])
        head_norm = DegreeLayerNorm(hidden_dim, n_degrees)
        self.head = nn.Sequential(head_norm, nn.ReLU(), MaskedLinear(hidden_degrees, transition_degrees.reshape(-1)))
        self._norm_eps = head_norm.eps

    embed_rows: th.Tensor
    supports_per_row_noise = True

    def embed_time(self, t: th.Tensor) -> th.Tensor:
        """
        :param t: diffusion step of each sample, shape (B,), or of each row of each sample, shape (B, H)
        :return: embeddings, shape (B, E)
        """
        if t.dim() == 1:
            return self.time_embedding(t)
        rows = self.time_embedding(t)  # (B, H, E)
        return rows.gather(1, self.embed_rows.expand(rows.shape[0], 1, -1)).squeeze(1)

    # While sampling, a causal sampler often needs only the first rows: the closed-loop sampler's rows that have not yet
    # started wait, and their outputs are not read. The outputs of rows < r read only inputs and hidden units of degree
    # <= r, so ``denoise_sampling(..., rows=r)`` runs every layer on those units alone: with the hidden units laid out
    # degree by degree (``DegreeMajorLayout``) and the window's inputs in time order, each layer is a slice of its
    # weight. Same function to float rounding; at K = 8 sampling steps, row lag 1 and H = 10 it is about two thirds
    # of the matmul FLOPs of a pass (benchmarks/training_speed.py).

    def prepare_sampling(self, t: th.Tensor) -> tuple[th.Tensor, tuple[th.Tensor, ...]]:
        conditionings, (folded,) = super().prepare_sampling(t)
        layout = self.sampling_layout
        layers: list[th.Tensor] = []
        for block in self.blocks:
            assert isinstance(block, CausalResidualBlock)
            norm, linear = block.norm, block.linear
            layers += [layout.units(norm.weight), layout.units(norm.bias), layout.weight(linear.masked_weight())]
            layers.append(layout.units(linear.bias))
        head_norm, _, head = self.head
        assert isinstance(head_norm, DegreeLayerNorm) and isinstance(head, MaskedLinear)
        layers += [layout.units(head_norm.weight), layout.units(head_norm.bias), layout.units(head.masked_weight()), head.bias]
        return layout.units(conditionings), (layout.units(folded), *layers)

    def denoise_sampling(
        self,
        x_t: th.Tensor,
        actions: th.Tensor,
        conditioning: th.Tensor | None,
        shared: tuple[th.Tensor, ...],
        rows: int | None = None,
    ) -> th.Tensor:
        assert conditioning is not None, "the MLP denoiser is conditioned on the diffusion step"
        rows = self.horizon if rows is None else rows
        if not 1 <= rows <= self.horizon:
            raise ValueError(f"rows must be in [1, {self.horizon}], got {rows}")
        degrees, layout = rows + 1, self.sampling_layout
        units, n_inputs = degrees * layout.per_degree, self._inputs_below[degrees]
        folded, *layers = shared
        h = th.addmm(conditioning[:, :units], self._flat_window(x_t, actions)[:, :n_inputs], folded[:n_inputs, :units])
        for i in range(0, len(layers) - 4, 4):
            norm_weight, norm_bias, weight, bias = layers[i : i + 4]
            h = h + F.linear(
                th.relu(self._sampling_norm(h, norm_weight, norm_bias, degrees)), weight[:units, :units], bias[:units]
            )
        norm_weight, norm_bias, weight, bias = layers[-4:]
        outputs = rows * self.transition_dim
        head = F.linear(
            th.relu(self._sampling_norm(h, norm_weight, norm_bias, degrees)), weight[:outputs, :units], bias[:outputs]
        )
        out = x_t.new_zeros(x_t.shape[0], self.horizon * self.transition_dim)
        out[:, :outputs] = head
        return out.unflatten(1, (self.horizon, self.transition_dim))

    def _sampling_norm(self, h: th.Tensor, weight: th.Tensor, bias: th.Tensor, degrees: int) -> th.Tensor:
        """``DegreeLayerNorm`` of the first ``degrees`` degrees' units in ``DegreeMajorLayout``."""
        layout, units = self.sampling_layout, h.shape[-1]
        normed = normalize_by_degree(
            h.unflatten(-1, (degrees, -1)), layout.counts[:degrees], layout.real[:degrees], -1, self._norm_eps
        )
        return normed.flatten(-2) * weight[:units] + bias[:units]

    def input_weights(self) -> tuple[th.Tensor, th.Tensor]:
        # Masked: their product, the folded layer of sampling, keeps the causal structure (a product of
        # degree-monotone masks is degree-monotone).
        assert isinstance(self.input_layer, MaskedLinear) and isinstance(self.proj, MaskedLinear)
        return self.input_layer.masked_weight(), self.proj.masked_weight()
