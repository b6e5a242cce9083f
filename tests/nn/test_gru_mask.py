"""GRU.forward(mask=...): Keras' step masks (True = a real step; masked steps carry the state).

Oracles: fastgru.reference (float64) run on each sequence's real steps alone; Keras 3 (torch backend)
with Embedding(mask_zero=True) on left-padded, right-padded and holed token batches; gradcheck.
"""

import pytest
import torch
from interop_util import TOL, fill_, max_err

import fastgru
from fastgru import GRUInputError, functional, reference

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _mask(kind: str, B: int, T: int) -> torch.Tensor:
    """(B, T) bool: 'left' / 'right' padding with ragged lengths, 'holes' anywhere; row 0 is full."""
    lengths = torch.randint(1, T + 1, (B,))
    steps = torch.arange(T)
    if kind == "right":
        mask = steps < lengths[:, None]
    elif kind == "left":
        mask = steps >= (T - lengths)[:, None]
    else:
        mask = torch.rand(B, T) < 0.6
        mask[:, torch.randint(0, T, (1,))] = True  # no empty row here (tested on its own)
    mask[0] = True
    return mask


def _groups(model):
    names = functional.weight_names(model.num_layers, model.bidirectional)
    return [tuple(getattr(model, n).detach().double() for n in group.split(",")) for group in names]


def _expected(model, x_bt, hx, mask, mask_output):
    """Per sequence: the float64 reference over its real steps; masked steps filled as documented."""
    B, T, _ = x_bt.shape
    H, dirs = model.hidden_size, 2 if model.bidirectional else 1
    out = torch.zeros(B, T, dirs * H, dtype=torch.float64)
    h_n = torch.zeros(hx.shape, dtype=torch.float64)
    for b in range(B):
        steps = mask[b].nonzero().squeeze(1)
        y, h = reference.gru(x_bt[b, steps].double().unsqueeze(1), hx[:, b : b + 1].double(), _groups(model),
                             num_layers=model.num_layers, bidirectional=model.bidirectional,
                             reset_after=model.reset_after)
        out[b, steps] = y[:, 0]
        h_n[:, b] = h[:, 0]
        if mask_output == "carry":
            for t in range(T):
                if mask[b, t]:
                    continue
                before, after = steps[steps < t], steps[steps > t]
                if len(before):  # forward direction: the previous real step's output
                    out[b, t, :H] = out[b, before[-1], :H]
                if dirs == 2 and len(after):  # backward direction: the next real step's output
                    out[b, t, H:] = out[b, after[0], H:]
    return out, h_n


@pytest.mark.parametrize("kind", ["left", "right", "holes"])
@pytest.mark.parametrize("mask_output", ["zero", "carry"])
@pytest.mark.parametrize(("bidirectional", "batch_first", "dtype", "reset_after"), [
    (False, True, torch.float32, True),
    (True, True, torch.float64, True),
    (True, False, torch.float32, False),
    (False, False, torch.float64, False),
])
def test_matches_reference_on_real_steps(kind, mask_output, bidirectional, batch_first, dtype, reset_after):
    B, T, I, H, layers = 5, 7, 3, 4, 2
    model = fastgru.nn.GRU(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                           reset_after=reset_after, dtype=dtype)
    x_bt = torch.randn(B, T, I, dtype=dtype)
    hx = torch.randn(layers * (2 if bidirectional else 1), B, H, dtype=dtype)
    mask = _mask(kind, B, T)
    x = x_bt if batch_first else x_bt.transpose(0, 1)
    with torch.no_grad():
        y, h_n = model(x, hx, mask=mask, mask_output=mask_output)
    y = y if batch_first else y.transpose(0, 1)
    want_y, want_h = _expected(model, x_bt, hx, mask, mask_output)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert max_err(y, want_y) < tol and max_err(h_n, want_h) < tol


@pytest.mark.parametrize("mask_output", ["zero", "carry"])
def test_gradcheck_with_holes(mask_output):
    T, B, I, H = 4, 3, 2, 2
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=torch.float64, requires_grad=True)
    flat = [(torch.randn(s, dtype=torch.float64) * 0.5).requires_grad_()
            for _ in range(2) for s in ((3 * H, I), (3 * H, H), (3 * H,), (3 * H,))]
    mask = torch.tensor([[True, False, True, True], [False, False, True, False], [True, True, False, False]])

    def f(x, h0, *flat):
        return functional.gru(x, h0, [tuple(flat[:4]), tuple(flat[4:])], bidirectional=True, mask=mask,
                              mask_output=mask_output)

    assert torch.autograd.gradcheck(f, (x, h0, *flat))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_all_true_mask_is_exactly_no_mask(bidirectional):
    model = fastgru.nn.GRU(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(3, 6, 3, requires_grad=True)
    y0, h0 = model(x)
    (y0.sum() + h0.sum()).backward()
    g0 = x.grad.clone()
    x.grad = None
    for mask_output in ("zero", "carry"):
        y, h = model(x, mask=torch.ones(3, 6, dtype=torch.bool), mask_output=mask_output)
        assert torch.equal(y, y0) and torch.equal(h, h0)
    (y.sum() + h.sum()).backward()
    assert torch.equal(x.grad, g0)


def test_sequence_without_real_steps_keeps_its_initial_state():
    """As Keras: no step is real, so the state never changes and every output is zero."""
    model = fastgru.nn.GRU(3, 4, bidirectional=True, batch_first=True)
    x, hx = torch.randn(3, 5, 3), torch.randn(2, 3, 4)
    mask = torch.tensor([[True] * 5, [False] * 5, [False, True, True, False, True]])
    for mask_output in ("zero", "carry"):
        y, h = model(x, hx, mask=mask, mask_output=mask_output)
        assert torch.equal(h[:, 1], hx[:, 1]) and not y[1].any()
        alone_y, alone_h = model(x[2:, [1, 2, 4]], hx[:, 2:])  # the other rows are unaffected
        assert max_err(y[2, [1, 2, 4]], alone_y[0]) < 1e-6 and max_err(h[:, 2], alone_h[:, 0]) < 1e-6


def test_unbatched_input_takes_a_1d_mask():
    model = fastgru.nn.GRU(3, 4)
    x, mask = torch.randn(6, 3), torch.tensor([False, True, True, False, True, False])
    y, h = model(x, mask=mask)
    want_y, want_h = model(x[mask])
    assert max_err(y[mask], want_y) < 1e-6 and max_err(h, want_h) < 1e-6 and not y[~mask].any()


INVALID = [
    ("not a tensor", lambda m: dict(mask=[[True] * 5] * 2), "mask must be a torch.Tensor"),
    ("float mask", lambda m: dict(mask=m.float()), "dtype torch.bool"),
    ("int mask", lambda m: dict(mask=m.long()), "dtype torch.bool"),
    ("time-major mask", lambda m: dict(mask=m.t().contiguous()), r"shape \(batch, seq_len\) = \(2, 5\)"),
    ("too short", lambda m: dict(mask=m[:, :4]), r"shape \(batch, seq_len\)"),
    ("3-D mask", lambda m: dict(mask=m[:, :, None]), r"shape \(batch, seq_len\)"),
    ("mask and lengths", lambda m: dict(mask=m, lengths=torch.tensor([5, 3])), "lengths or mask, not both"),
    ("bad mask_output", lambda m: dict(mask=m, mask_output="last"), "mask_output must be one of"),
    ("meta device", lambda m: dict(mask=m.to("meta")), "mask is on device meta"),
]


@pytest.mark.parametrize(("what", "kwargs", "message"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_masks_raise(what, kwargs, message):
    model = fastgru.nn.GRU(3, 4)
    x = torch.randn(5, 2, 3)  # time-major input: the mask is still (batch, seq_len)
    mask = torch.rand(2, 5) < 0.5
    with pytest.raises(GRUInputError, match=message):
        model(x, **kwargs(mask))


def test_invalid_masks_raise_for_packed_and_unbatched_input():
    model = fastgru.nn.GRU(3, 4)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with pytest.raises(GRUInputError, match="PackedSequence"):
        model(packed, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(GRUInputError, match=r"mask must be 1-D \(seq_len,\)"):
        model(torch.randn(5, 3), mask=torch.ones(1, 5, dtype=torch.bool))


# ------------------------------------------------------------------------------------------- Keras

VOCAB, E, H = 20, 5, 6


def _tokens(kind: str, B: int = 6, T: int = 8) -> torch.Tensor:
    """Token ids 1..VOCAB-1 at real steps, 0 (Keras' mask_zero padding) at masked ones; with holes, the
    last sequence is all padding (Keras keeps its state and outputs zeros)."""
    tokens = torch.randint(1, VOCAB, (B, T)) * _mask(kind, B, T)
    if kind == "holes":
        tokens[-1] = 0
    return tokens


@pytest.mark.parametrize("kind", ["left", "right", "holes"])
@pytest.mark.parametrize("layer", ["gru", "bidirectional", "stack"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_matches_keras_embedding_mask_zero(keras, kind, layer, return_sequences):
    """Embedding(mask_zero=True) -> GRU / Bidirectional(GRU) / two Bidirectional(GRU): Keras' mask."""
    from fastgru.interop import from_keras

    if layer == "gru":
        grus = [keras.layers.GRU(H, return_sequences=return_sequences)]
    elif layer == "bidirectional":
        grus = [keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=return_sequences))]
    else:
        grus = [keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True)),
                keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=return_sequences))]
    embedding = keras.layers.Embedding(VOCAB, E, mask_zero=True)
    model = fill_(keras.Sequential([keras.Input((None,), dtype="int32"), embedding, *grus]))
    tokens = _tokens(kind)
    want = keras.ops.convert_to_numpy(model(tokens.int().numpy()))

    gru = from_keras(grus if len(grus) > 1 else grus[0])
    vectors = torch.as_tensor(keras.ops.convert_to_numpy(embedding.embeddings))[tokens]
    # a Keras GRU repeats its last output at masked steps; Bidirectional forces zeros there
    with torch.no_grad():
        out, h_n = gru(vectors, mask=tokens != 0, mask_output="carry" if layer == "gru" else "zero")
    got = out if return_sequences else (h_n[-1] if layer == "gru" else torch.cat((h_n[-2], h_n[-1]), dim=1))
    assert max_err(got, want) < TOL
