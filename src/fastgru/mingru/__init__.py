"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gates see only the input, so the
whole sequence is one parallel scan.

- :mod:`fastgru.mingru.module`: the modules (``MinGRU``, ``MinGRUBlock``, ``MinGRUStack``);
- :mod:`fastgru.mingru.ops`: the autograd-aware operation the modules call, with the sequential and
  parallel modes;
- :mod:`fastgru.mingru.scan`: the log-space scan in plain torch (the CPU path and the oracle);
- :mod:`fastgru.mingru.triton_scan`: the Triton kernel of the scan on CUDA.
"""

from fastgru.mingru.module import MinGRU, MinGRUBlock, MinGRUStack

__all__ = ["MinGRU", "MinGRUBlock", "MinGRUStack"]
