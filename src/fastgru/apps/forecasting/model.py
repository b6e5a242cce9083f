"""The seasonal-residual GRU forecaster: starts as the best baseline and learns what it misses.

For an origin t (the first forecast step) with horizon H and K target columns, in per-series
standardised units relative to the last observed value of each target:

    h      = GRU(patches of the last W steps)                       encoder, last hidden state
    r_k    = MLP([h, d_k, e_k])            for k = 0..H-1           multi-step decoder, one row per step
    yhat_k = b_k + W_o r_k + c_o                                    residual over the baseline b

- patches: the window of W = P * n_patches past steps cut into n_patches blocks of P steps (every
  column, targets minus their last value) plus the calendar features of each block's last step, so a
  window reaching a week back costs the GRU only a few dozen steps;
- d_k: what is known about step k in advance: known-future covariates, calendar features, and the
  seasonal-naive forecast of step k for every season (the value one day / one week before);
- e_k: a learned embedding of the step index k;
- b_k: the best baseline's forecast of step k (chosen per target on the validation part).

The output layer (W_o, c_o) starts at zero, so before any training the model IS the best baseline;
training moves it only where that lowers the loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _rnn(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.Module:
    kw = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, batch_first=True,
              dropout=dropout if num_layers > 1 else 0.0)
    if cell == "gru":
        from fastgru.nn import GRU

        return GRU(**kw)
    if cell == "torch_gru":
        return nn.GRU(**kw)
    if cell == "lstm":
        return nn.LSTM(**kw)
    return nn.RNN(**kw, nonlinearity="tanh")


class _Predicts:
    """``predict(x)``: the forward pass in eval mode without gradients, the module's mode restored after."""

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        was = self.training
        self.eval()
        try:
            return self.forward(x)
        finally:
            self.train(was)


class SeasonalResidualGRU(_Predicts, nn.Module):
    """Encoder GRU over patches + per-step MLP decoder + zero-initialised residual head (see module doc).

    Args:
        n_patches, patch_features: encoder input shape per window.
        horizon, step_features: decoder input shape per window (features of each forecast step).
        targets: K, outputs per step.
        hidden_size, num_layers, dropout, cell: the recurrent encoder ("gru" is fastgru's GRU).

    forward(x) takes the flat rows built by :func:`fastgru.apps.forecasting.features.pack`, shape
    (N, n_patches*patch_features + horizon*step_features + horizon*K), and returns (N, horizon*K).
    """

    def __init__(self, n_patches: int, patch_features: int, horizon: int, step_features: int, targets: int,
                 hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0, cell: str = "gru",
                 step_embedding: int = 8) -> None:
        super().__init__()
        self.shape = dict(n_patches=n_patches, patch_features=patch_features, horizon=horizon,
                          step_features=step_features, targets=targets, hidden_size=hidden_size,
                          num_layers=num_layers, dropout=dropout, cell=cell, step_embedding=step_embedding)
        self.encoder = _rnn(cell, patch_features, hidden_size, num_layers, dropout)
        self.step = nn.Embedding(horizon, step_embedding)
        self.decoder = nn.Sequential(nn.Linear(hidden_size + step_features + step_embedding, hidden_size), nn.ReLU(),
                                     nn.Linear(hidden_size, hidden_size), nn.ReLU())
        self.out = nn.Linear(hidden_size, targets)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def unpack(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s = self.shape
        n_enc = s["n_patches"] * s["patch_features"]
        n_dec = s["horizon"] * s["step_features"]
        n = x.shape[0]
        enc = x[:, :n_enc].reshape(n, s["n_patches"], s["patch_features"])
        dec = x[:, n_enc : n_enc + n_dec].reshape(n, s["horizon"], s["step_features"])
        base = x[:, n_enc + n_dec :].reshape(n, s["horizon"], s["targets"])
        return enc, dec, base

    def forward(self, x: Tensor, lengths: Tensor | None = None, **_: Any) -> Tensor:
        enc, dec, base = self.unpack(x)
        _, state = self.encoder(enc)
        h = (state[0] if isinstance(state, tuple) else state)[-1]  # (N, hidden): the top layer's last state
        n, horizon = dec.shape[0], dec.shape[1]
        steps = self.step.weight.unsqueeze(0).expand(n, horizon, -1)
        z = torch.cat([h.unsqueeze(1).expand(n, horizon, -1), dec, steps], dim=-1)
        return (base + self.out(self.decoder(z))).reshape(n, -1)



class ResidualEnsemble(_Predicts, nn.Module):
    """The mean of several independently trained :class:`SeasonalResidualGRU` members (same inputs).

    All members share the base, so the mean is the base plus the mean of their residuals: averaging
    cancels part of each member's error that comes from its initialisation and batch order, which
    matters most on short series, where one small model's validation-chosen stopping point is noisy.
    """

    def __init__(self, members: list[SeasonalResidualGRU]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.shape = dict(members[0].shape, members=len(members))

    def unpack(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.members[0].unpack(x)

    def forward(self, x: Tensor, lengths: Tensor | None = None, **_: Any) -> Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)

    @torch.no_grad()
    def zero_residual(self, targets: list[int] | None = None) -> None:
        """Switch every member's residual off for the target columns `targets` (default: all): the ensemble's
        forecast of those targets becomes their base exactly."""
        rows = list(range(self.shape["targets"])) if targets is None else list(targets)
        for m in self.members:
            m.out.weight[rows] = 0.0
            m.out.bias[rows] = 0.0

