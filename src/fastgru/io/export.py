"""Export fastgru modules to files other runtimes read: `onnx(model, path)` writes a standard ONNX GRU.

Kept apart from `fastgru.interop` (which converts in memory) so "write a file" is one obvious call.
For Keras, build the model with `fastgru.interop.to_keras(module)` and save it with Keras' own
`model.save("model.keras")`.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from fastgru.interop.onnx_graph import DEFAULT_OPSET, to_onnx_model
from fastgru.io.atomic import check_target, write_atomic


def onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    lengths: bool = False,
    initial_state: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write `model` (fastgru / torch GRU or GRUCell) to `path` as an ONNX graph of standard GRU nodes.

    One GRU node per layer with linear_before_reset = reset_after and direction forward or
    bidirectional. Graph inputs 'input' (+ 'lengths' int64 (B,) if lengths=True, which becomes the
    nodes' sequence_lens; + 'h0' if initial_state=True); outputs 'output', 'h_n' as the module returns
    them ('h' for a GRUCell). The file is written atomically and an existing file is only replaced with
    overwrite=True. Returns the path.
    """
    check_target(path, overwrite=overwrite)  # fail before building anything
    proto = to_onnx_model(model, opset=opset, lengths=lengths, initial_state=initial_state)
    return write_atomic(path, proto.SerializeToString(), overwrite=overwrite)
