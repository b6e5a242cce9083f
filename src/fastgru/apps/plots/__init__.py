"""See inside a GRU: gate heatmaps, the GRU process animated, gradient flow through time."""

from fastgru.apps.plots.animate import animate_gru
from fastgru.apps.plots.gates import GateTrace, gru_gate_trace, gru_step_gates, layer_weights
from fastgru.apps.plots.gradient_flow import jacobian_norms, plot_gradient_flow
from fastgru.apps.plots.heatmap import plot_gate_heatmaps

__all__ = [
    "GateTrace",
    "animate_gru",
    "gru_gate_trace",
    "gru_step_gates",
    "jacobian_norms",
    "layer_weights",
    "plot_gate_heatmaps",
    "plot_gradient_flow",
]
