"""Stream: feed a recurrent model one time step at a time, keeping its state between calls."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Stream:
    """Holds the state of any fastgru layer that has `step(x_t, state) -> (y_t, state)`.

        stream = Stream(model.eval())
        for frame in frames:
            y = stream(frame)          # (B, H) or (H,) for each (B, I) or (I,) frame
        stream.reset()                 # start a new sequence
    """

    def __init__(self, model: nn.Module, state: Tensor | None = None) -> None:
        if not hasattr(model, "step"):
            raise TypeError(f"{type(model).__name__} has no step(x_t, state) method; it cannot stream")
        self.model = model
        self.state = state
        # a model may offer a lower-overhead stepper for batched calls once a state exists (GRU on a CPU)
        self._stepper = getattr(model, "_fused_stepper", lambda: None)()

    def __call__(self, x_t: Tensor) -> Tensor:
        if self._stepper is not None and self.state is not None:
            result = self._stepper(x_t, self.state)  # a kernel call outside autograd: no no_grad needed
            if result is not None:
                self.state, y = result
                return y
        with torch.no_grad():
            y, self.state = self.model.step(x_t, self.state)
        return y

    def reset(self, state: Tensor | None = None) -> None:
        """Forget the carried state (the next call starts a new sequence)."""
        self.state = state
