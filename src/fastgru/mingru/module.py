"""MinGRU modules (Feng et al. 2024, "Were RNNs All We Needed?"): the layer stack and residual blocks.

`MinGRU` follows torch.nn.GRU's conventions (input_size, hidden_size, num_layers, batch_first,
forward(input, hx=None, lengths=None) -> (output, h_n), step(x_t, state) for streaming).
`MinGRUBlock` is the arrangement the paper's language models and minGRU-pytorch use:
pre-norm (RMSNorm or LayerNorm) -> MinGRU with an optional expansion of the hidden size -> linear
projection back -> residual, optionally followed by a pre-norm feed-forward with its own residual.
`MinGRUStack` chains such blocks. The math lives in fastgru.mingru.ops.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fastgru.core.errors import GRUInputError
from fastgru.core.validation import check_fraction, check_lengths, check_positive_int
from fastgru.mingru import ops as mingru_ops

NORMS = ("rms", "layer", None)


def _check_mode(mode: object) -> None:
    if mode not in mingru_ops.MODES:
        raise ValueError(f"mode must be one of {mingru_ops.MODES}, got {mode!r}")


class MinGRU(nn.Module):
    r"""Stacked minGRU layers (Feng et al. 2024): the gates read only :math:`x_t`, so training runs as a
    parallel scan over time instead of a sequential loop.

    Each layer computes

    .. math::
        \begin{array}{ll}
            z_t = \sigma(W_z x_t + b_z) \\
            \tilde h_t = g(W_h x_t + b_h), \quad g(v) = v + 0.5 \text{ if } v \ge 0 \text{ else } \sigma(v) \\
            h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t
        \end{array}

    a linear recurrence in :math:`h`, which the parallel mode solves as a log-space scan.

    Args:
        input_size: features of each input step, :math:`I`.
        hidden_size: features of the state, :math:`H`.
        num_layers: stacked layers. Default: 1.
        bias: whether the layers have biases. Default: ``True``.
        batch_first: input and output as (B, T, feature). Default: ``False``.
        dropout: dropout on the outputs of every layer but the last, in training mode. Default: 0.
        device: where the parameters are created.
        dtype: the parameters' floating type.

    Keyword Args:
        mode: ``"auto"`` (the parallel scan on CUDA, the sequential loop on the CPU, where it is faster),
            ``"parallel"`` or ``"sequential"``; all give the same outputs to rounding. Default: ``"auto"``.

    Inputs: input, hx, lengths
        - **input**: (T, B, I), (B, T, I) with ``batch_first``, or (T, I) unbatched.
        - **hx**: (num_layers, B, H) initial state; default zeros.
        - **lengths**: int64 (B,) real steps per sequence of a right-padded batch; outputs past a length
          are zero and ``h_n`` is the state at the last real step.

    Outputs: output, h_n
        - **output**: (T, B, H) (or batch-first, or unbatched like the input): the last layer's states.
        - **h_n**: (num_layers, B, H): every layer's final state.

    Attributes:
        weight_l[k]: (2H, in_k), the z rows first, then the candidate rows; initialised like
            ``nn.Linear`` (:math:`U(\pm 1/\sqrt{in_k})`).
        bias_l[k]: (2H).

    Examples::

        >>> rnn = fastgru.nn.MinGRU(8, 16, num_layers=2)
        >>> output, h_n = rnn(torch.randn(30, 4, 8))
        >>> output.shape, h_n.shape
        (torch.Size([30, 4, 16]), torch.Size([2, 4, 16]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        mode: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            check_positive_int(name, value)
        check_fraction("dropout", dropout)
        _check_mode(mode)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.mode = bias, batch_first, float(dropout), mode
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            setattr(self, f"weight_l{layer}", nn.Parameter(torch.empty(2 * hidden_size, fan_in, **factory)))
            if bias:
                setattr(self, f"bias_l{layer}", nn.Parameter(torch.empty(2 * hidden_size, **factory)))
            else:
                self.register_parameter(f"bias_l{layer}", None)
        self.reset_parameters()

    def layer_weights(self) -> list[tuple[Tensor, Tensor | None]]:
        """(weight, bias) per layer, the form fastgru.mingru.ops and fastgru.core.reference.mingru take."""
        return [(getattr(self, f"weight_l{k}"), getattr(self, f"bias_l{k}")) for k in range(self.num_layers)]

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w, b in self.layer_weights():
                bound = 1.0 / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound)
                if b is not None:
                    b.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("mode", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def forward(
        self, input: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(input, Tensor):
            raise GRUInputError(f"input must be a torch.Tensor (PackedSequence: pass a padded tensor and "
                                f"lengths= instead), got {type(input).__name__}")
        unbatched = input.dim() == 2
        if unbatched:
            if lengths is not None:
                raise GRUInputError("lengths is for batched input; an unbatched (2-D) input is one sequence")
            if hx is not None and hx.dim() != 2:
                raise GRUInputError(f"for unbatched 2-D input, hx must be 2-D (num_layers, hidden_size), "
                                    f"got shape {tuple(hx.shape)}")
            input = input.unsqueeze(0 if self.batch_first else 1)
            hx = None if hx is None else hx.unsqueeze(1)
        output, h_n = mingru_ops.mingru(
            input, hx, self.layer_weights(), batch_first=self.batch_first, dropout=self.dropout,
            training=self.training, mode=self.mode, lengths=lengths,
        )
        if unbatched:
            return output.squeeze(0 if self.batch_first else 1), h_n.squeeze(1)
        return output, h_n

    def step(self, input: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step (streaming): input (B, I) or (I,), state (num_layers, B, H) (or (num_layers, H)).

        Returns (output (B, H) or (H,), new state). Feeding a sequence one step at a time gives the
        full-sequence call's outputs (the sequential mode's arithmetic). Fits fastgru.nn.Stream.
        """
        if not isinstance(input, Tensor) or input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise GRUInputError(f"step: input must be (batch, {self.input_size}) or ({self.input_size},), "
                                f"got {shape}")
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        expected = (self.num_layers, x.shape[0], self.hidden_size)
        if state is None:
            state = x.new_zeros(expected)
        elif unbatched and state.dim() == 2:
            state = state.unsqueeze(1)
        if not isinstance(state, Tensor) or tuple(state.shape) != expected:
            shape = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise GRUInputError(f"step: state must have shape {expected}, got {shape}")
        if state.dtype != x.dtype or state.device != x.device:
            raise GRUInputError(f"step: state ({state.dtype}, {state.device}) must match input "
                                f"({x.dtype}, {x.device})")
        new = []
        for layer, (w, b) in enumerate(self.layer_weights()):
            x = mingru_ops.mingru_step(x, state[layer], w, b)
            new.append(x)
        new_state = torch.stack(new)
        return (x.squeeze(0), new_state.squeeze(1)) if unbatched else (x, new_state)


def _norm(kind: str | None, dim: int, factory: dict) -> nn.Module:
    if kind == "rms":
        return nn.RMSNorm(dim, **factory)
    if kind == "layer":
        return nn.LayerNorm(dim, **factory)
    return nn.Identity()


def _mask(y: Tensor, lengths: Tensor | None, batch_first: bool) -> Tensor:
    """Zero y at steps t >= lengths[b] (y batched, time axis by batch_first)."""
    if lengths is None:
        return y
    T = y.shape[1] if batch_first else y.shape[0]
    live = torch.arange(T, device=y.device).unsqueeze(1) < lengths.to(y.device).unsqueeze(0)  # (T, B)
    if batch_first:
        live = live.T
    return y * live.unsqueeze(-1).to(y.dtype)


class MinGRUBlock(nn.Module):
    """Residual MinGRU block: y = x + W_out MinGRU(norm(x)) [then y = y + FF(norm2(y)) if ff_mult > 0].

    dim: model width (input = output size). expansion: hidden size = round(dim * expansion); with
    expansion != 1 a bias-free Linear(hidden, dim) maps back (identity otherwise). norm: "rms"
    (RMSNorm), "layer" (LayerNorm) or None. residual=False drops the skip connections. ff_mult > 0 adds
    the pre-norm feed-forward Linear(dim, ff_mult * dim) -> GELU -> Linear(., dim).
    forward(x, hx=None, lengths=None) -> (y, h_n (1, B, hidden)); outputs past each length are zero.
    """

    def __init__(
        self,
        dim: int,
        *,
        expansion: float = 1.0,
        norm: str | None = "rms",
        residual: bool = True,
        ff_mult: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        mode: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        if not isinstance(expansion, (int, float)) or isinstance(expansion, bool) or expansion <= 0:
            raise ValueError(f"expansion must be a positive number, got {expansion!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if not isinstance(ff_mult, (int, float)) or isinstance(ff_mult, bool) or ff_mult < 0:
            raise ValueError(f"ff_mult must be a number >= 0, got {ff_mult!r}")
        factory = {"device": device, "dtype": dtype}
        self.dim, self.hidden_size = dim, max(1, round(dim * expansion))
        self.residual, self.batch_first = residual, batch_first
        self.norm = _norm(norm, dim, factory)
        self.mingru = MinGRU(dim, self.hidden_size, bias=bias, batch_first=batch_first, mode=mode, **factory)
        self.proj = (nn.Linear(self.hidden_size, dim, bias=False, **factory) if self.hidden_size != dim
                     else nn.Identity())
        if ff_mult > 0:
            inner = max(1, round(dim * ff_mult))
            self.ff_norm = _norm(norm, dim, factory)
            self.ff = nn.Sequential(nn.Linear(dim, inner, **factory), nn.GELU(), nn.Linear(inner, dim, **factory))
        else:
            self.ff_norm, self.ff = None, None

    def _finish(self, x: Tensor, m: Tensor) -> Tensor:
        y = self.proj(m)
        if self.residual:
            y = x + y
        if self.ff is not None:
            f = self.ff(self.ff_norm(y))
            y = y + f if self.residual else f
        return y

    def forward(
        self, x: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        m, h_n = self.mingru(self.norm(x), hx, lengths)
        y = self._finish(x, m)
        if lengths is not None:
            batch = x.shape[0] if self.batch_first else x.shape[1]
            T = x.shape[1] if self.batch_first else x.shape[0]
            y = _mask(y, check_lengths(lengths, batch, T, enforce_sorted=False), self.batch_first)
        return y, h_n

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step: x (B, dim) or (dim,), state (1, B, hidden) or None -> (y, new state)."""
        m, state = self.mingru.step(self.norm(x), state)
        return self._finish(x, m), state


class MinGRUStack(nn.Module):
    """num_layers MinGRUBlocks in a row, with an optional final norm (as minGRU language models end).

    Keyword arguments after dim and num_layers go to every MinGRUBlock. final_norm: apply the blocks'
    norm kind once more at the end. forward(x, hx=None, lengths=None) -> (y, h_n (num_layers, B,
    hidden)); step(x_t, state) streams.
    """

    def __init__(self, dim: int, num_layers: int, *, final_norm: bool = True, **block_kwargs) -> None:
        super().__init__()
        check_positive_int("num_layers", num_layers)
        self.blocks = nn.ModuleList(MinGRUBlock(dim, **block_kwargs) for _ in range(num_layers))
        factory = {k: block_kwargs[k] for k in ("device", "dtype") if k in block_kwargs}
        self.final_norm = _norm(block_kwargs.get("norm", "rms"), dim, factory) if final_norm else nn.Identity()
        self.batch_first = bool(block_kwargs.get("batch_first", False))
        self.num_layers, self.hidden_size = num_layers, self.blocks[0].hidden_size

    def _check_state(self, hx: Tensor | None, name: str) -> None:
        if hx is not None and (not isinstance(hx, Tensor) or hx.dim() < 2 or hx.shape[0] != self.num_layers):
            shape = tuple(hx.shape) if isinstance(hx, Tensor) else type(hx).__name__
            raise GRUInputError(f"{name} must have num_layers = {self.num_layers} states in its first dimension, "
                                f"got {shape}")

    def forward(
        self, x: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        self._check_state(hx, "hx")
        finals = []
        for k, block in enumerate(self.blocks):
            x, h_n = block(x, None if hx is None else hx[k : k + 1], lengths)
            finals.append(h_n)
        y = self.final_norm(x)
        if lengths is not None:
            y = _mask(y, torch.as_tensor(lengths), self.batch_first)
        return y, torch.cat(finals)

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step: x (B, dim) or (dim,), state (num_layers, B, hidden) or None -> (y, new state)."""
        self._check_state(state, "state")
        new = []
        for k, block in enumerate(self.blocks):
            x, s = block.step(x, None if state is None else state[k : k + 1])
            new.append(s)
        return self.final_norm(x), torch.cat(new)
