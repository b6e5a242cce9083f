"""fastgru.nn.GRU and GRUCell: drop-ins for torch.nn.GRU / GRUCell with the same parameters.

Same constructor arguments, parameter names (weight_ih_l0, bias_hh_l1_reverse, ...), return values and
initialisation as torch, so state_dicts load both ways; plus `reset_after` (False = Cho et al. 2014),
Keras-style initialisation, a `lengths=` argument for variable-length batches, and an opt-in
non-finite check. The math runs in fastgru.core.functional (hand-written BPTT, fused backends).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from fastgru.backends import BACKENDS, CellSpec
from fastgru.backends import cpu as cpu_backend
from fastgru.core import functional
from fastgru.core.errors import GRUInputError
from fastgru.core.validation import (
    check_choice,
    check_flag,
    check_fraction,
    check_hard_sigmoid,
    check_hidden,
    check_positive_int,
    check_regularization,
)

INITS = ("torch", "keras")
_KERNEL_DTYPES = (torch.float32, torch.float64)


def _check_sizes(input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        check_positive_int(name, value)
    check_fraction("dropout", dropout, allow_one=True)  # as torch.nn.GRU


def _check_options(*, init: str, backend: str, **flags: object) -> None:
    """The non-numeric constructor options: init and backend names, and the boolean flags."""
    check_choice("init", init, INITS)
    check_choice("backend", backend, BACKENDS)
    for name, value in flags.items():
        check_flag(name, value)


def _init_group(w_ih: Tensor, w_hh: Tensor, biases: list[Tensor], hidden_size: int, init: str) -> None:
    """torch: U(-1/sqrt(H), 1/sqrt(H)) everywhere. keras: glorot-uniform W_ih, orthogonal W_hh, zero biases."""
    with torch.no_grad():
        if init == "torch":
            k = 1.0 / math.sqrt(hidden_size)
            for p in (w_ih, w_hh, *biases):
                p.uniform_(-k, k)
        else:
            nn.init.xavier_uniform_(w_ih)  # same limit as Keras' glorot over the whole (I, 3H) kernel
            nn.init.orthogonal_(w_hh)
            for b in biases:
                b.zero_()


class GRU(nn.Module):
    r"""Multi-layer gated recurrent unit, a drop-in for :class:`torch.nn.GRU` (same constructor, same
    parameter names and shapes, same outputs and gradients), computed by fastgru's fused kernels.

    For each element of the input sequence, each layer computes

    .. math::
        \begin{array}{ll}
            r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
            z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
            n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
            h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    where :math:`\sigma` is the sigmoid and :math:`\odot` the elementwise product. With
    ``reset_after=False`` the candidate is Cho et al. 2014's form,
    :math:`n_t = \tanh(W_{in} x_t + b_{in} + W_{hn}(r_t \odot h_{t-1}) + b_{hn})`. The input of layer
    :math:`k > 1` is the output of layer :math:`k - 1` (both directions concatenated), with dropout
    between layers in training mode.

    Args:
        input_size: features of each input step, :math:`I`.
        hidden_size: features of the state, :math:`H`.
        num_layers: stacked layers. Default: 1.
        bias: whether the layers have ``b_ih`` and ``b_hh``. Default: ``True``.
        batch_first: input and output as (B, T, feature) instead of (T, B, feature) (not ``h_n``).
            Default: ``False``.
        dropout: dropout probability on the outputs of every layer but the last, in training mode.
            Default: 0.
        bidirectional: a second direction per layer that reads the sequence backwards. Default: ``False``.
        device: where the parameters are created.
        dtype: the parameters' floating type.

    Keyword Args (fastgru's own; their defaults give torch.nn.GRU's model):
        reset_after: ``True`` (PyTorch, cuDNN, Keras's default) or ``False`` (Cho et al. 2014, Keras's
            ``reset_after=False``). Default: ``True``.
        init: ``"torch"`` (:math:`U(-1/\sqrt{H}, 1/\sqrt{H})` everywhere, as torch.nn.GRU) or ``"keras"``
            (Glorot-uniform input weights, orthogonal recurrent weights, zero biases). Default: ``"torch"``.
        check_finite: raise :class:`fastgru.GRUInputError` when the input or the state holds NaN or inf
            (one extra pass over the input). Default: ``False``.
        backend: ``"auto"`` (the fused C++ kernel on the CPU, Triton on CUDA when it applies, the torch
            loop otherwise), or one of ``"cpu"``, ``"torch"``, ``"triton"`` to force it. Default: ``"auto"``.
        input_dropout: dropout on each layer's input, one mask per sequence for all steps (Gal and
            Ghahramani 2016; Keras's ``dropout``). Default: 0.
        recurrent_dropout: dropout on :math:`h_{t-1}` in the recurrent product, one mask per sequence
            (Keras's ``recurrent_dropout``). Default: 0.
        zoneout: probability that a unit keeps its previous value at a step (Krueger et al. 2017); at
            evaluation the expectation. Default: 0.
        gate_activation: ``"sigmoid"`` or ``"hard_sigmoid"`` for :math:`r` and :math:`z`. Default:
            ``"sigmoid"``.
        candidate_activation: ``"tanh"``, ``"relu"``, ``"softsign"``, ``"sigmoid"`` or ``"hard_sigmoid"``
            for :math:`n`. Default: ``"tanh"``.
        hard_sigmoid: ``(alpha, beta)`` of :math:`\max(0, \min(1, \alpha v + \beta))`. Default:
            ``(0.2, 0.5)`` (Keras 2; Keras 3 uses ``(1/6, 0.5)``).

    Inputs: input, hx, lengths, mask, mask_output
        - **input**: (T, B, I), or (B, T, I) with ``batch_first``, or (T, I) unbatched, or a
          :class:`~torch.nn.utils.rnn.PackedSequence`.
        - **hx**: initial state (num_layers * num_directions, B, H), or (num_layers * num_directions, H)
          for unbatched input. Default: zeros.
        - **lengths**: int64 (B,), each sequence's number of real steps in a right-padded batch (on any
          device). Outputs past a sequence's length are zero and ``h_n`` is the state at its last real
          step; the padding never enters the computation. Each length must lie in [1, T].
        - **mask** (keyword): bool (B, T), always batch first whatever ``batch_first`` is (as Keras's
          masks), or (T,) for unbatched input; ``True`` marks a real step. Keras's semantics: a masked
          step leaves the state unchanged, so each sequence runs over its real steps alone, in order,
          wherever they are (left padding as ``keras.utils.pad_sequences`` makes by default, right
          padding, holes); in a bidirectional layer the backward direction runs over the real steps in
          reverse, as Keras's ``Bidirectional``. Every layer sees the same mask. ``h_n`` is the state after
          the last real step (the first, for the backward direction). A sequence with no real step keeps
          ``hx`` as its ``h_n`` and outputs zeros, as in Keras. An all-True mask gives exactly the
          unmasked result. Not together with ``lengths`` or a PackedSequence. Runs on the fast
          ``lengths`` path (real steps gathered to the front, outputs put back).
        - **mask_output** (keyword): the output at masked steps. ``"zero"`` (default): zeros, as Keras's
          ``Bidirectional(..., return_sequences=True)`` (and any Keras RNN with
          ``zero_output_for_mask=True``). ``"carry"``: the last output so far in processing order, zeros
          before the first real step, as a plain Keras ``GRU(return_sequences=True)``; the backward
          direction repeats the next real step's output. Outputs at real steps do not depend on it.

    Outputs: output, h_n
        - **output**: (T, B, num_directions * H) (or batch-first, or unbatched like the input; a
          PackedSequence for a packed input): the last layer's state at every step.
        - **h_n**: (num_layers * num_directions, B, H): every layer's final state.

    Attributes:
        weight_ih_l[k]: (3H, I) for k = 0, else (3H, num_directions * H); gates in the order r, z, n.
        weight_hh_l[k]: (3H, H).
        bias_ih_l[k]: (3H).
        bias_hh_l[k]: (3H). The reverse direction's parameters end in ``_reverse``; a torch.nn.GRU
            ``state_dict`` loads both ways.

    Note:
        :meth:`step` advances one step at a time for streaming (unidirectional, evaluation mode) and
        gives the full-sequence call's numbers. ``torch.compile`` and ``torch.export`` trace through the
        kernels (a custom op with a registered backward); ``torch.jit.script`` is not supported.

    Examples::

        >>> gru = fastgru.nn.GRU(10, 20, num_layers=2, batch_first=True)
        >>> x = torch.randn(3, 5, 10)
        >>> output, h_n = gru(x)
        >>> output.shape, h_n.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 20]))
        >>> output, h_n = gru(x, lengths=torch.tensor([5, 2, 4]))  # a padded batch
        >>> mask = torch.arange(5) >= torch.tensor([[0], [3], [1]])  # left padding: real steps at the end
        >>> output, h_n = gru(x, mask=mask, mask_output="carry")  # as Keras's GRU(return_sequences=True)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        reset_after: bool = True,
        init: str = "torch",
        check_finite: bool = False,
        backend: str = "auto",
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        gate_activation: str = "sigmoid",
        candidate_activation: str = "tanh",
        hard_sigmoid: tuple[float, float] = (0.2, 0.5),
    ) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size, num_layers, dropout)
        _check_options(init=init, backend=backend, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
                       reset_after=reset_after, check_finite=check_finite)
        check_regularization(dropout, input_dropout, recurrent_dropout, zoneout)
        alpha, beta = check_hard_sigmoid(hard_sigmoid)
        self.cell = CellSpec(gate_activation, candidate_activation, alpha, beta)
        self.input_dropout = float(input_dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.zoneout = float(zoneout)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.reset_after = reset_after
        self.init = init
        self.check_finite = check_finite
        self.backend = backend
        dirs = 2 if bidirectional else 1
        factory = {"device": device, "dtype": dtype}
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * dirs
            for suffix in ("", "_reverse")[:dirs]:
                shapes = {
                    f"weight_ih_l{layer}{suffix}": (3 * hidden_size, layer_in),
                    f"weight_hh_l{layer}{suffix}": (3 * hidden_size, hidden_size),
                }
                if bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (3 * hidden_size,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (3 * hidden_size,)
                for name, shape in shapes.items():
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    @property
    def gate_activation(self) -> str:
        return self.cell.gate_activation

    @property
    def candidate_activation(self) -> str:
        return self.cell.candidate_activation

    @property
    def hard_sigmoid(self) -> tuple[float, float]:
        return (self.cell.hard_sigmoid_alpha, self.cell.hard_sigmoid_beta)

    def _groups(self) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        per = 4 if self.bias else 2
        names = self._flat_weights_names
        groups = []
        for i in range(0, len(names), per):
            ws = [getattr(self, n) for n in names[i : i + per]]
            groups.append((ws[0], ws[1], ws[2], ws[3]) if self.bias else (ws[0], ws[1], None, None))
        return groups

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        # any change of a parameter object, option or mode: the streaming stepper is rebuilt on next use
        self.__dict__["_stepper"] = None

    def __getstate__(self) -> dict:
        # the kernel's stepper is a cache that cannot be pickled: copies and torch.save rebuild it on use
        return {**super().__getstate__(), "_stepper": None}

    def __prepare_scriptable__(self):
        """torch.jit.script cannot compile this module (its forward dispatches to fused kernels from
        Python); say so plainly instead of TorchScript's message about keyword-only arguments."""
        raise RuntimeError(
            f"torch.jit.script does not support fastgru.nn.{type(self).__name__}: use torch.compile(model), "
            "or torch.jit.trace(model, example_input) for a TorchScript graph, or fastgru.io.export.onnx"
        )

    def _draws_masks(self) -> bool:
        """Training with any regularisation: each call draws per-sequence masks, which step() cannot."""
        return self.training and bool(self.input_dropout or self.recurrent_dropout or self.zoneout or self.dropout)

    def _step_runner(self):
        """The CPU kernel's Stepper for this model, built once and cached (it re-transposes the weights
        itself when a parameter changes in place), or False where the kernel cannot serve the model."""
        runner = self.__dict__.get("_stepper")
        if runner is None:
            runner = _build_step_runner(self)
            self.__dict__["_stepper"] = runner
        return runner

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer-direction, as torch.nn.GRU.all_weights."""
        return [[w for w in group if w is not None] for group in self._groups()]

    def reset_parameters(self) -> None:
        for w_ih, w_hh, b_ih, b_hh in self._groups():
            _init_group(w_ih, w_hh, [b for b in (b_ih, b_hh) if b is not None], self.hidden_size, self.init)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if not self.reset_after:
            s += ", reset_after=False"
        for name in ("input_dropout", "recurrent_dropout", "zoneout"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        if not self.cell.plain:
            s += f", gate_activation={self.cell.gate_activation!r}"
            s += f", candidate_activation={self.cell.candidate_activation!r}"
        return s

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | None = None,
        lengths: Tensor | None = None,
        *,
        enforce_sorted: bool = False,
        mask: Tensor | None = None,
        mask_output: str = "zero",
    ) -> tuple[Tensor | PackedSequence, Tensor]:
        if lengths is None and mask is None:
            out = self._one_call(input, hx)
            if out is not None:
                return out
        if isinstance(input, PackedSequence):
            if lengths is not None or mask is not None:
                raise GRUInputError("lengths and mask must be None for a PackedSequence input (it carries its "
                                    "own lengths)")
            return self._forward_packed(input, hx)
        if not isinstance(input, Tensor):
            raise GRUInputError(f"input must be a torch.Tensor or PackedSequence, got {type(input).__name__}")
        unbatched = input.dim() == 2
        if unbatched:
            if lengths is not None:
                raise GRUInputError("lengths is for batched input; an unbatched (2-D) input is one sequence")
            if hx is not None and hx.dim() != 2:
                raise GRUInputError(
                    f"for unbatched 2-D input, hx must be 2-D (num_layers * num_directions, hidden_size), "
                    f"got shape {tuple(hx.shape)}"
                )
            if isinstance(mask, Tensor) and mask.dim() != 1:
                raise GRUInputError(f"for unbatched 2-D input, mask must be 1-D (seq_len,), got shape "
                                    f"{tuple(mask.shape)}")
            input = input.unsqueeze(1 if not self.batch_first else 0)
            hx = hx.unsqueeze(1) if hx is not None else None
            mask = mask.unsqueeze(0) if isinstance(mask, Tensor) else mask
        output, h_n = self._run(input, hx, lengths, enforce_sorted, mask=mask, mask_output=mask_output)
        if unbatched:
            output = output.squeeze(1 if not self.batch_first else 0)
            h_n = h_n.squeeze(1)
        return output, h_n

    def _one_call(self, input: Tensor, hx: Tensor | None) -> tuple[Tensor, Tensor] | None:
        """The common inference call straight to the CPU kernel's one-call stack, or None where it does not apply.

        It applies without autograd, to a 3-D float32/float64 CPU tensor, with the plain cell, no regularisation
        in effect, no finite-value check and the parameters registered as they were built. It makes every check
        of the general path that could fail here (input and hx shapes, dtypes, devices), and leaves anything
        else, every bad argument included, to the general path (`functional.gru`), which words the error. The
        parameters are read at each call, never cached. Why: at T=1 the general path's Python costs more than
        the kernel (about 25 us against 8, one layer, H=32).
        """
        if (torch.is_grad_enabled() or type(input) is not Tensor or input.dim() != 3 or input.device.type != "cpu"
                or input.dtype not in _KERNEL_DTYPES or not self.cell.plain or self.zoneout or self.check_finite
                or self.backend not in ("auto", "cpu")
                or (self.training and (self.dropout or self.input_dropout or self.recurrent_dropout))
                or type(self)._run is not GRU._run or type(self)._layer_norms is not GRU._layer_norms
                or torch.compiler.is_compiling()):
            return None
        registered = self._parameters  # a parametrized or re-registered weight is not here: general path
        dtype = input.dtype
        flat: list[Tensor | None] = []
        for name in self._flat_weights_names:
            p = registered.get(name)
            if p is None or p.dtype != dtype or p.device.type != "cpu":
                return None
            flat.append(p)
            if not self.bias and name.startswith("weight_hh"):
                flat += [None, None]
        x = input.transpose(0, 1) if self.batch_first else input
        T, B, states = x.shape[0], x.shape[1], self._num_states()
        if T == 0 or B == 0 or x.shape[2] != flat[0].shape[1]:
            return None
        if hx is not None and (type(hx) is not Tensor or hx.dtype != dtype or hx.device.type != "cpu"
                               or tuple(hx.shape) != (states, B, self.hidden_size)):
            return None
        ext = cpu_backend.load()
        if ext is None:
            return None
        output, h_n = ext.infer(x, hx, flat, self.num_layers, self.bidirectional, self.reset_after,
                                functional.autocast_bf16(x))
        return (output.transpose(0, 1) if self.batch_first else output), h_n

    def _run(self, input: Tensor, hx: Tensor | None, lengths: Tensor | None, enforce_sorted: bool = False, *,
             mask: Tensor | None = None, mask_output: str = "zero"):
        return functional.gru(
            input, hx, self._groups(),
            num_layers=self.num_layers, bidirectional=self.bidirectional, batch_first=self.batch_first,
            dropout=self.dropout, training=self.training, reset_after=self.reset_after, lengths=lengths,
            enforce_sorted=enforce_sorted, check_finite_values=self.check_finite, backend=self.backend,
            cell=self.cell, input_dropout=self.input_dropout, recurrent_dropout=self.recurrent_dropout,
            zoneout=self.zoneout, layer_norms=self._layer_norms(), mask=mask, mask_output=mask_output,
        )

    def _layer_norms(self) -> list[tuple[Tensor, Tensor]] | None:
        """(gain_ih, gain_hh) per layer-direction for layer-normalised subclasses; None here."""
        return None

    def _forward_packed(self, packed: PackedSequence, hx: Tensor | None) -> tuple[PackedSequence, Tensor]:
        """Run a PackedSequence as a padded batch in its sorted order, then pack the output identically."""
        sorted_only = PackedSequence(packed.data, packed.batch_sizes)
        padded, lengths = pad_packed_sequence(sorted_only, batch_first=False)
        if hx is not None and packed.sorted_indices is not None:
            check_hidden(hx, (self._num_states(), padded.shape[1], self.hidden_size), padded)
            hx = hx.index_select(1, packed.sorted_indices)
        saved_batch_first = self.batch_first
        try:
            self.batch_first = False
            out, h_n = self._run(padded, hx, lengths)
        finally:
            self.batch_first = saved_batch_first
        data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
        if packed.unsorted_indices is not None:
            h_n = h_n.index_select(1, packed.unsorted_indices)
        return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), h_n

    def _num_states(self) -> int:
        return self.num_layers * (2 if self.bidirectional else 1)

    def step(self, input: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Advance one time step (streaming): input (B, I) or (I,), state (num_layers, B, H) or None.

        Returns (output (B, H) or (H,), new state). Feeding a sequence one step at a time gives the
        full-sequence call's outputs. Unidirectional only; regularisation must be off (eval mode).
        Inference on a CPU runs one fused C++ call for all layers (a few microseconds).
        """
        if state is not None and not torch.is_grad_enabled() and not self._draws_masks():
            runner = self._step_runner()
            if runner:  # the common streaming call: one C++ call does the checks and the step
                result = runner(input, state)
                if result is not None:
                    return result[1], result[0]
        if self.bidirectional:
            raise GRUInputError("step() needs a unidirectional GRU: the reverse direction reads the future")
        if self._draws_masks():
            raise GRUInputError("step() draws no per-sequence masks: call model.eval() before streaming")
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise GRUInputError(f"step: input must be (batch, {self.input_size}) or ({self.input_size},), "
                                f"got {tuple(input.shape)}")
        if state is None:
            state = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
        elif unbatched and state.dim() == 2:
            state = state.unsqueeze(1)
        new = _fused_step(self, x, state)
        if new is None:
            out, new = self._run(x.unsqueeze(0), state, None)
            new = new.clone()
        output = new[-1]
        return (output.squeeze(0), new.squeeze(1)) if unbatched else (output, new)

    def _fused_stepper(self):
        """For fastgru.nn.Stream: a (x (B, I), state (L, B, H)) -> (new state, output) function with the
        least per-call work, or None when the kernel cannot serve this model. The function returns None
        for a call it cannot take (shapes, dtype, training with regularisation); Stream then uses step()."""
        if not self._step_runner():
            return None

        def stepper(x: Tensor, state: Tensor):
            if self._draws_masks():
                return None
            runner = self._step_runner()
            return runner(x, state) if runner else None

        return stepper


def _build_step_runner(gru: GRU):
    """A C++ Stepper over gru's parameters, or False (bidirectional, layer norm, torch backend, not on a
    CPU, no extension)."""
    if gru.bidirectional or gru.backend == "torch" or gru._layer_norms() is not None:
        return False
    if gru.weight_hh_l0.device.type != "cpu" or gru.weight_hh_l0.dtype not in (torch.float32, torch.float64):
        return False
    ext = cpu_backend.load()
    if ext is None:
        return False
    c = gru.cell
    params = [p for group in gru._groups() for p in group]
    return ext.Stepper(params, gru.reset_after, gru.zoneout, c.gate_activation_id, c.candidate_activation_id,
                       c.hard_sigmoid_alpha, c.hard_sigmoid_beta)


def _fused_step(gru: GRU, x: Tensor, state: Tensor) -> Tensor | None:
    """The CPU extension's one-call step after full checks, or None when it cannot be used (grad, device,
    no extension)."""
    if x.device.type != "cpu":
        return None
    if torch.is_grad_enabled() and (x.requires_grad or state.requires_grad or gru.weight_hh_l0.requires_grad):
        return None
    runner = gru._step_runner()
    if not runner:
        return None
    if state.shape != (gru.num_layers, x.shape[0], gru.hidden_size):
        raise GRUInputError(f"step: state must have shape {(gru.num_layers, x.shape[0], gru.hidden_size)}, "
                            f"got {tuple(state.shape)}")
    dtype = gru.weight_hh_l0.dtype
    if dtype != x.dtype or state.dtype != x.dtype:
        raise GRUInputError(f"step: input ({x.dtype}), state ({state.dtype}) and weights ({dtype}) "
                            "must share a dtype")
    result = runner(x, state)
    return None if result is None else result[0]


class GRUCell(nn.Module):
    r"""One GRU step, a drop-in for :class:`torch.nn.GRUCell` (same parameters, same numbers).

    .. math::
        \begin{array}{ll}
            r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
            z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
            n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
            h' = (1 - z) \odot n + z \odot h
        \end{array}

    Args:
        input_size: features of the input, :math:`I`.
        hidden_size: features of the state, :math:`H`.
        bias: whether there are ``bias_ih`` and ``bias_hh``. Default: ``True``.
        device: where the parameters are created.
        dtype: the parameters' floating type.

    Keyword Args:
        reset_after: ``False`` gives Cho et al. 2014's candidate
            :math:`n = \tanh(W_{in} x + b_{in} + W_{hn}(r \odot h) + b_{hn})`. Default: ``True``.
        init: ``"torch"`` or ``"keras"`` initialisation (see :class:`GRU`). Default: ``"torch"``.
        backend: ``"auto"``, ``"cpu"``, ``"torch"`` or ``"triton"`` (see :class:`GRU`). Default: ``"auto"``.

    Inputs: input, hx
        - **input**: (B, I) or (I,).
        - **hx**: (B, H) or (H,); default zeros.

    Outputs: h'
        - **h'**: (B, H) or (H,), the next state.

    Attributes:
        weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H), bias_hh (3H): gates in the order r, z, n.

    Examples::

        >>> cell = fastgru.nn.GRUCell(10, 20)
        >>> h = torch.zeros(3, 20)
        >>> for x in torch.randn(6, 3, 10):
        ...     h = cell(x, h)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        reset_after: bool = True,
        init: str = "torch",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size)
        _check_options(init=init, backend=backend, bias=bias, reset_after=reset_after)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.reset_after, self.init, self.backend = reset_after, init, backend
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        biases = [b for b in (self.bias_ih, self.bias_hh) if b is not None]
        _init_group(self.weight_ih, self.weight_hh, biases, self.hidden_size, self.init)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if not self.reset_after:
            s += ", reset_after=False"
        return s

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if not isinstance(input, Tensor) or input.dim() not in (1, 2):
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise GRUInputError(f"GRUCell: input must be 1-D (input_size,) or 2-D (batch, input_size), got {shape}")
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        if hx is not None:
            h = hx.unsqueeze(0) if unbatched and hx.dim() == 1 else hx
            check_hidden(h, (x.shape[0], self.hidden_size), x)
        else:
            h = None
        _, h_n = functional.gru(
            x.unsqueeze(0), None if h is None else h.unsqueeze(0),
            [(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)],
            reset_after=self.reset_after, backend=self.backend,
        )
        out = h_n[0]
        return out.squeeze(0) if unbatched else out


class LayerNormGRU(GRU):
    """GRU with layer-normalised gate pre-activations (Ba et al. 2016, as haste's LayerNormGRU).

    The input projections (3H) and the recurrent products are normalised with learnable gains
    ln_weight_ih_l{k}[_reverse] and ln_weight_hh_l{k}[_reverse] (initialised to 1); the usual biases
    are the norms' shifts. The recurrent norm covers all 3H values (reset_after=True) or the r,z block
    and the n block (reset_after=False). Same constructor and forward as fastgru.nn.GRU.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        factory = {"device": self.weight_hh_l0.device, "dtype": self.weight_hh_l0.dtype}
        self._ln_names: list[tuple[str, str]] = []
        for name in self._flat_weights_names:
            if name.startswith("weight_ih_"):
                suffix = name[len("weight_ih_"):]
                pair = (f"ln_weight_ih_{suffix}", f"ln_weight_hh_{suffix}")
                for ln_name in pair:
                    setattr(self, ln_name, nn.Parameter(torch.ones(3 * self.hidden_size, **factory)))
                self._ln_names.append(pair)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for pair in getattr(self, "_ln_names", []):
            for ln_name in pair:
                nn.init.ones_(getattr(self, ln_name))

    def _layer_norms(self) -> list[tuple[Tensor, Tensor]]:
        return [(getattr(self, a), getattr(self, b)) for a, b in self._ln_names]
