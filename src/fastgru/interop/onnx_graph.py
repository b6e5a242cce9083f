"""ONNX GRU operator <-> fastgru modules, built with the onnx helper API (no tracing, no unrolling).

ONNX's GRU (opset 7+, latest version 14) keeps, per direction d: W[d] (3H, I), R[d] (3H, H),
B[d] = [Wb, Rb] (6H), gate order z, r, h, and computes fastgru's math with h' = (1 - z) * h~ + z * h;
linear_before_reset=1 is reset_after=True, 0 is reset_after=False (Rb_h then sits outside r, exactly
like fastgru's b_hn). So both variants convert without arithmetic: exact both ways.

Export: one GRU node per layer (direction 'forward' or 'bidirectional'); between layers, Y (T, D, B, H)
is transposed and reshaped to (T, B, D * H), the next layer's X. `lengths` (int64, as fastgru takes
it) becomes every node's sequence_lens; `h0` is sliced per layer into initial_h.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fastgru.interop.layout import GRUSpec, InteropError, Weights, build, swap_rz, weights_of

DEFAULT_OPSET = 17
# fastgru activation name <-> ONNX's. HardSigmoid is clamp(alpha x + beta, 0, 1) with alpha, beta taken
# from activation_alpha / activation_beta, which are consumed in order by the activations that use
# them (the ONNX text; onnxruntime does so), defaults 0.2 and 0.5.
TO_ONNX = {"sigmoid": "Sigmoid", "hard_sigmoid": "HardSigmoid", "tanh": "Tanh", "relu": "Relu", "softsign": "Softsign"}
FROM_ONNX = {v.lower(): k for k, v in TO_ONNX.items()}
_USES_ALPHA = ("affine", "leakyrelu", "thresholdedrelu", "scaledtanh", "hardsigmoid", "elu")
_USES_BETA = ("affine", "scaledtanh", "hardsigmoid")


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX conversion needs onnx: pip install 'fastgru[interop]'") from exc
    return onnx


def _elem_type(dtype: torch.dtype) -> int:
    onnx = _onnx()
    table = {
        torch.float32: onnx.TensorProto.FLOAT,
        torch.float64: onnx.TensorProto.DOUBLE,
        torch.float16: onnx.TensorProto.FLOAT16,
    }
    if dtype not in table:
        raise InteropError(f"ONNX export supports float32, float64 and float16 weights, got {dtype}")
    return table[dtype]


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def onnx_weights(spec: GRUSpec, weights: list[Weights], layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(W, R, B) of one layer in ONNX layout: (D, 3H, I), (D, 3H, H), (D, 6H) or None without bias."""
    H, D = spec.hidden_size, spec.num_directions
    groups = weights[layer * D : (layer + 1) * D]
    W = np.stack([_np(swap_rz(g[0], H)) for g in groups])
    R = np.stack([_np(swap_rz(g[1], H)) for g in groups])
    if not spec.bias:
        return W, R, None
    B = np.stack([np.concatenate((_np(swap_rz(g[2], H)), _np(swap_rz(g[3], H)))) for g in groups])
    return W, R, B


def to_onnx_model(
    module: nn.Module,
    *,
    opset: int = DEFAULT_OPSET,
    lengths: bool = False,
    initial_state: bool = False,
    model_name: str = "fastgru",
):
    """An onnx.ModelProto computing `module` (a fastgru/torch GRU or GRUCell) with standard GRU nodes.

    Graph inputs: 'input' ((T, B, I), or (B, T, I) if batch_first; a GRUCell takes (B, I)),
    'lengths' (int64 (B,), if lengths=True), 'h0' ((layers * dirs, B, H), or (B, H) for a cell, if
    initial_state=True; zeros otherwise). Outputs: 'output' and 'h_n' as fastgru.nn.GRU returns them
    (a cell: 'h' only). T and B are dynamic. The graph is an inference graph: dropout of every kind is
    off, as in eval mode; activations map to the node's activations attribute; zoneout (which changes
    eval outputs) is refused.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if opset < 14:
        raise InteropError(f"opset must be >= 14 (GRU-14 with the layout attribute), got {opset}")
    spec, weights = weights_of(module)
    spec.refuse_options("an ONNX GRU", ("zoneout",), " (zoneout changes eval-mode outputs)")
    if spec.cell and lengths:
        raise InteropError("lengths=True does not apply to a GRUCell (one step)")
    elem = _elem_type(weights[0][0].dtype)
    H, D, L = spec.hidden_size, spec.num_directions, spec.num_layers
    act_attrs = _activation_attrs(spec)
    nodes, inits = [], []

    def const(name: str, values) -> str:
        """An int64 constant initializer (added once)."""
        if all(t.name != name for t in inits):
            inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    if spec.cell:
        x_shape, out_shapes = ["batch", spec.input_size], {"h": ["batch", H]}
        h0_shape = ["batch", H]
    else:
        time_batch = ["batch", "seq_len"] if spec.batch_first else ["seq_len", "batch"]
        x_shape = [*time_batch, spec.input_size]
        out_shapes = {"output": [*time_batch, D * H], "h_n": [L * D, "batch", H]}
        h0_shape = [L * D, "batch", H]
    inputs = [helper.make_tensor_value_info("input", elem, x_shape)]
    x = "input"
    if spec.cell:
        nodes.append(helper.make_node("Unsqueeze", [x, const("axes_0", [0])], ["x_seq"]))
        x = "x_seq"
    elif spec.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["x_time_major"], perm=[1, 0, 2]))
        x = "x_time_major"
    seq_lens = ""
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]))
        nodes.append(helper.make_node("Cast", ["lengths"], ["sequence_lens"], to=TensorProto.INT32))
        seq_lens = "sequence_lens"
    if initial_state:
        inputs.append(helper.make_tensor_value_info("h0", elem, h0_shape))
        if spec.cell:
            nodes.append(helper.make_node("Unsqueeze", ["h0", const("axes_0", [0])], ["h0_dirs"]))
    finals = []
    for layer in range(L):
        W, R, B = onnx_weights(spec, weights, layer)
        names = [f"W_l{layer}", f"R_l{layer}", f"B_l{layer}"]
        inits += [numpy_helper.from_array(W, names[0]), numpy_helper.from_array(R, names[1])]
        if B is not None:
            inits.append(numpy_helper.from_array(B, names[2]))
        init_h = ""
        if initial_state:
            if spec.cell:
                init_h = "h0_dirs"
            else:
                init_h = f"h0_l{layer}"
                nodes.append(helper.make_node(
                    "Slice",
                    ["h0", const(f"h0_start_l{layer}", [layer * D]), const(f"h0_end_l{layer}", [(layer + 1) * D]),
                     const("axes_0", [0])],
                    [init_h],
                ))
        gru_inputs = [x, names[0], names[1], names[2] if B is not None else "", seq_lens, init_h]
        while gru_inputs[-1] == "":
            gru_inputs.pop()
        y, y_h = f"Y_l{layer}", f"Y_h_l{layer}"
        nodes.append(helper.make_node(
            "GRU", gru_inputs, [y, y_h], name=f"gru_l{layer}", hidden_size=H,
            direction="bidirectional" if spec.bidirectional else "forward",
            linear_before_reset=1 if spec.reset_after else 0, **act_attrs,
        ))
        finals.append(y_h)
        if not spec.cell:
            nodes.append(helper.make_node("Transpose", [y], [f"Y_tbdh_l{layer}"], perm=[0, 2, 1, 3]))
            shape = const("shape_keep_t_b", [0, 0, -1])
            nodes.append(helper.make_node("Reshape", [f"Y_tbdh_l{layer}", shape], [f"out_l{layer}"]))
            x = f"out_l{layer}"
    if spec.cell:
        nodes.append(helper.make_node("Squeeze", [finals[0], const("axes_0", [0])], ["h"]))
    else:
        if spec.batch_first:
            nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
        else:
            nodes.append(helper.make_node("Identity", [x], ["output"]))
        nodes.append(helper.make_node("Concat", finals, ["h_n"], axis=0) if L > 1
                     else helper.make_node("Identity", finals, ["h_n"]))
    outputs = [helper.make_tensor_value_info(n, elem, s) for n, s in out_shapes.items()]
    graph = helper.make_graph(nodes, model_name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="fastgru", opset_imports=[helper.make_opsetid("", opset)])
    model.doc_string = f"fastgru {type(module).__name__}: {spec}"
    # the graph transposes batch-first inputs itself (layout stays 0); record it so from_onnx restores it
    helper.set_model_props(model, {"fastgru.batch_first": str(int(spec.batch_first))})
    onnx.checker.check_model(model)
    return model


def _activation_attrs(spec: GRUSpec) -> dict:
    """activations / activation_alpha / activation_beta attributes; none for the default Sigmoid, Tanh."""
    return activation_attrs(spec.gate_activation, spec.candidate_activation, spec.hard_sigmoid, spec.num_directions)


def activation_attrs(gate: str, candidate: str, hard_sigmoid: tuple[float, float], num_directions: int = 1) -> dict:
    """A GRU node's activation attributes for fastgru's activation names; {} for the default Sigmoid, Tanh.

    Raises InteropError for an activation ONNX's GRU does not list.
    """
    if (gate, candidate) == ("sigmoid", "tanh"):
        return {}
    for role, name in (("gate_activation", gate), ("candidate_activation", candidate)):
        if name not in TO_ONNX:
            raise InteropError(f"an ONNX GRU cannot express {role}={name!r} (it has {sorted(TO_ONNX)})")
    acts = [TO_ONNX[gate], TO_ONNX[candidate]] * num_directions
    out: dict = {"activations": acts}
    hard = [a for a in acts if a == "HardSigmoid"]
    if hard:
        out["activation_alpha"] = [float(hard_sigmoid[0])] * len(hard)
        out["activation_beta"] = [float(hard_sigmoid[1])] * len(hard)
    return out


# ---------------------------------------------------------------------------------------------- import


def _load(model_or_path):
    onnx = _onnx()
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        try:
            return onnx.load(str(path))
        except Exception as exc:  # protobuf DecodeError and friends
            raise InteropError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    raise InteropError(f"expected an onnx.ModelProto or a path, got {type(model_or_path).__name__}")


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _node_layer(node, consts: dict[str, np.ndarray]) -> tuple[dict, list[Weights]]:
    """Checked attributes and hub weights of one ONNX GRU node."""
    where = f"ONNX GRU node {node.name or '(unnamed)'!r}"
    a = _attrs(node)
    direction = a.get("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise InteropError(
            f"{where}: direction={direction!r} is not supported (fastgru runs 'forward' or 'bidirectional'; "
            "flip the input of a 'reverse' GRU yourself)"
        )
    D = 2 if direction == "bidirectional" else 1
    activations = _parse_activations(a, D, where)
    if "clip" in a:
        raise InteropError(f"{where}: clip={a['clip']} is not supported (fastgru does not clip the gates)")
    inputs = list(node.input) + [""] * (6 - len(node.input))
    for i, role in ((1, "W"), (2, "R"), (3, "B")):
        if inputs[i] and inputs[i] not in consts:
            raise InteropError(f"{where}: {role} ({inputs[i]!r}) is a graph input, not a stored initializer")
    W, R = consts[inputs[1]], consts[inputs[2]]
    B = consts.get(inputs[3]) if inputs[3] else None
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
        raise InteropError(f"{where}: W {W.shape} and R {R.shape} must be ({D}, 3H, I) and ({D}, 3H, H)")
    H = R.shape[2]
    if R.shape[1] != 3 * H or W.shape[1] != 3 * H:
        raise InteropError(f"{where}: W {W.shape} and R {R.shape} do not have 3 * hidden_size = {3 * H} rows")
    if "hidden_size" in a and a["hidden_size"] != H:
        raise InteropError(f"{where}: hidden_size={a['hidden_size']} but R has shape {R.shape}")
    if B is not None and B.shape != (D, 6 * H):
        raise InteropError(f"{where}: B must be ({D}, {6 * H}), got {B.shape}")
    groups: list[Weights] = []
    for d in range(D):
        w_ih = swap_rz(torch.from_numpy(W[d].copy()), H)
        w_hh = swap_rz(torch.from_numpy(R[d].copy()), H)
        if B is None:
            groups.append((w_ih, w_hh, None, None))
        else:
            b = torch.from_numpy(B[d].copy())
            groups.append((w_ih, w_hh, swap_rz(b[: 3 * H], H), swap_rz(b[3 * H :], H)))
    info = {
        "name": node.name, "input_size": W.shape[2], "hidden_size": H, "bidirectional": D == 2,
        "reset_after": bool(a.get("linear_before_reset", 0)), "bias": B is not None,
        "layout": a.get("layout", 0), **activations,
    }
    return info, groups


def _snap(value: float) -> float:
    """ONNX stores alpha/beta as float32: recover the simple number they were written from (0.3, 1/6, ...).

    The result rounds to the very same float32, so the ONNX model's math is unchanged; it only lets a
    fastgru -> ONNX -> fastgru round trip give back the exact Python float.
    """
    simple = float(Fraction(float(value)).limit_denominator(10000))
    return simple if np.float32(simple) == np.float32(value) else float(value)


def _parse_activations(a: dict, D: int, where: str) -> dict:
    """fastgru's gate_activation, candidate_activation, hard_sigmoid from a GRU node's attributes."""
    acts = [str(x) for x in a.get("activations", ["Sigmoid", "Tanh"] * D)]
    if len(acts) != 2 * D:
        raise InteropError(f"{where}: activations={acts} must list 2 functions per direction")
    alphas, betas = list(a.get("activation_alpha", [])), list(a.get("activation_beta", []))
    parsed = []  # (fastgru name, alpha, beta) per activation
    for act in acts:
        key = act.lower()
        alpha = alphas.pop(0) if key in _USES_ALPHA and alphas else 0.2
        beta = betas.pop(0) if key in _USES_BETA and betas else 0.5
        if key not in FROM_ONNX:
            raise InteropError(f"{where}: activation {act!r} is not supported (fastgru has {sorted(TO_ONNX.values())})")
        parsed.append((FROM_ONNX[key], _snap(alpha), _snap(beta)))
    if parsed[0][0] not in ("sigmoid", "hard_sigmoid"):
        raise InteropError(f"{where}: gate activation {acts[0]!r} is not supported (fastgru: Sigmoid, HardSigmoid)")
    if D == 2 and parsed[:2] != parsed[2:]:
        raise InteropError(f"{where}: activations differ between directions ({acts}); fastgru uses one set")
    hard = {(al, be) for name, al, be in parsed if name == "hard_sigmoid"}
    if len(hard) > 1:
        raise InteropError(f"{where}: HardSigmoid with different alpha/beta {sorted(hard)}; fastgru has one pair")
    return {
        "gate_activation": parsed[0][0],
        "candidate_activation": parsed[1][0],
        "hard_sigmoid": hard.pop() if hard else (0.2, 0.5),
    }


_SHAPE_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity")


def _fed_by(x: str, y: str, producers: dict) -> bool:
    """True if tensor `x` is tensor `y` passed through shape-only ops (how stacked GRU nodes connect)."""
    for _ in range(8):
        if x == y:
            return True
        node = producers.get(x)
        if node is None or node.op_type not in _SHAPE_OPS:
            return False
        x = node.input[0]
    return False


def from_onnx(model_or_path, *, node: str | int | None = None, batch_first: bool | None = None) -> nn.Module:
    """A fastgru.nn.GRU with exact copies of an ONNX model's GRU weights (W, R, B initializers).

    node: the GRU node's name or index among the model's GRU nodes. Without it the model must hold one
    GRU node, or a chain of them (each X computed from the previous Y by shape ops only, as
    `fastgru.io.export.onnx` writes) that becomes one multi-layer GRU. Activations fastgru has (gate:
    Sigmoid, HardSigmoid; candidate: Tanh, Relu, Softsign, Sigmoid, HardSigmoid) map across; the
    'reverse' direction, clip and other activations are refused. batch_first defaults to what
    `fastgru.io.export.onnx` recorded in the model's metadata, else to the node's layout attribute.
    """
    model = _load(model_or_path)
    graph = model.graph
    grus = [n for n in graph.node if n.op_type == "GRU" and n.domain in ("", "ai.onnx")]
    if not grus:
        raise InteropError("the ONNX model has no GRU node")
    consts = _constants(graph)
    if node is not None:
        if isinstance(node, int):
            if not 0 <= node < len(grus):
                raise InteropError(f"node={node}: the model has {len(grus)} GRU nodes")
            chosen = [grus[node]]
        else:
            chosen = [n for n in grus if n.name == node]
            if not chosen:
                raise InteropError(f"node={node!r}: no GRU node of that name; GRU nodes: {[n.name for n in grus]}")
    else:
        producers = {out: n for n in graph.node for out in n.output}
        for prev, nxt in zip(grus, grus[1:]):
            if not _fed_by(nxt.input[0], prev.output[0] if prev.output else "", producers):
                raise InteropError(
                    f"the ONNX model's GRU nodes {[n.name for n in grus]} are not one chain of layers; "
                    "pass node= (name or index) to import one of them"
                )
        chosen = grus
    layers = [_node_layer(n, consts) for n in chosen]
    first = layers[0][0]
    for info, _ in layers[1:]:
        for key in ("hidden_size", "bidirectional", "reset_after", "bias", "gate_activation",
                    "candidate_activation", "hard_sigmoid"):
            if info[key] != first[key]:
                raise InteropError(
                    f"ONNX GRU nodes {first['name']!r} and {info['name']!r} differ in {key}; import them one by "
                    "one with node="
                )
    if batch_first is None:
        props = {p.key: p.value for p in model.metadata_props}
        batch_first = props.get("fastgru.batch_first", str(first["layout"])) == "1"
    spec = GRUSpec(
        input_size=int(first["input_size"]),
        hidden_size=int(first["hidden_size"]),
        num_layers=len(layers),
        bias=first["bias"],
        bidirectional=first["bidirectional"],
        reset_after=first["reset_after"],
        batch_first=batch_first,
        gate_activation=first["gate_activation"],
        candidate_activation=first["candidate_activation"],
        hard_sigmoid=first["hard_sigmoid"],
    )
    weights = [g for _, groups in layers for g in groups]
    return build(spec, weights)
