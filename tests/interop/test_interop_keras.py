"""Keras 3 (torch backend) <-> fastgru: live layers, saved .keras / .weights.h5 files, both variants.

Every check compares against Keras' own outputs on fresh random weights and inputs; round trips must
be bit-exact; options fastgru cannot compute must be refused by name.
"""

import warnings
import zipfile

import numpy as np
import pytest
import torch
from interop_util import TOL, fill_, max_err, randomize_, same_state, scaled_err

import fastgru
from fastgru.interop import InteropError, from_keras, from_keras_file, to_keras

B, T, I, H = 4, 6, 3, 5
# Keras' own numpy conversions of torch tensors warn under numpy 2; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def knp(keras, value):
    return keras.ops.convert_to_numpy(value) if not isinstance(value, torch.Tensor) else value.detach().numpy()


def stack(keras, *, layers=1, bidirectional=False, reset_after=True, **gru_kw):
    """A Sequential of GRU (or Bidirectional(GRU)) layers returning sequences, with random weights."""
    parts = [keras.Input((None, I))]
    for _ in range(layers):
        gru = keras.layers.GRU(H, return_sequences=True, reset_after=reset_after, **gru_kw)
        parts.append(keras.layers.Bidirectional(gru) if bidirectional else gru)
    return fill_(keras.Sequential(parts))


def inputs():
    return torch.randn(B, T, I)


STRUCTURES = [(1, False), (2, False), (1, True), (2, True)]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("layers,bidirectional", STRUCTURES)
def test_from_live_model_matches_keras(keras, layers, bidirectional, reset_after):
    model = stack(keras, layers=layers, bidirectional=bidirectional, reset_after=reset_after)
    ours = from_keras(model)
    assert (ours.num_layers, ours.bidirectional, ours.reset_after, ours.batch_first) == (
        layers, bidirectional, reset_after, True)
    assert ours.cell.plain  # a default Keras GRU is fastgru's plain GRU (its fast path)
    x = inputs()
    with torch.no_grad():
        assert max_err(ours(x)[0], knp(keras, model(x.numpy()))) < TOL
    # the same weights, bit for bit, straight back into Keras
    back = to_keras(ours)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), back.get_weights()))


@pytest.mark.parametrize("reset_after", [True, False])
def test_masked_keras_equals_fastgru_lengths(keras, reset_after):
    """Keras masking of a right-padded batch is fastgru's lengths=: same outputs, same final states."""
    lengths = torch.tensor([T, 2, 4, 1])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).numpy()
    x = inputs()
    bi = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True, reset_after=reset_after))
    bi.build((None, None, I))
    fill_(bi)
    with torch.no_grad():
        y, _ = from_keras(bi)(x, lengths=lengths)
    assert max_err(y, knp(keras, bi(x.numpy(), mask=mask))) < TOL  # padded steps are zero on both sides
    gru = keras.layers.GRU(H, return_sequences=True, return_state=True, reset_after=reset_after)
    gru.build((None, None, I))
    fill_(gru)
    ky, kh = (knp(keras, v) for v in gru(x.numpy(), mask=mask))
    with torch.no_grad():
        y, h = from_keras(gru)(x, lengths=lengths)
    valid = torch.from_numpy(mask)[..., None]
    assert max_err(y * valid, ky * valid.numpy()) < TOL  # Keras repeats the last output past the mask
    assert max_err(h[0], kh) < TOL


@pytest.mark.parametrize("reset_after", [True, False])
def test_activations_and_dropout_options_map(keras, reset_after):
    model = stack(keras, layers=2, reset_after=reset_after, activation="relu",
                  recurrent_activation="hard_sigmoid", dropout=0.25)
    ours = from_keras(model)
    assert (ours.cell.gate_activation, ours.cell.candidate_activation, ours.input_dropout) == (
        "hard_sigmoid", "relu", 0.25)
    x = inputs()
    with torch.no_grad():
        assert scaled_err(ours.eval()(x)[0], knp(keras, model(x.numpy(), training=False))) < TOL
    back = to_keras(ours)
    assert back.layers[0].get_config()["recurrent_activation"] == "hard_sigmoid"
    assert back.layers[0].get_config()["dropout"] == 0.25


def test_dropout_layers_between_grus_become_fastgru_dropout(keras, tmp_path):
    inp = keras.Input((None, I))
    g1 = keras.layers.GRU(H, return_sequences=True, name="g1")(inp)
    d = keras.layers.Dropout(0.3)(g1)
    g2 = keras.layers.GRU(H, return_sequences=True, name="g2")(d)
    out = keras.layers.Dense(2, name="head")(g2)
    model = fill_(keras.Model(inp, out))
    whole = from_keras(model)  # the whole model (tests/interop/test_interop_keras_model.py); layers= takes the GRUs
    names = list(whole.steps)
    assert len(names) == 4 and (names[0], names[2], names[3]) == ("g1", "g2", "head")
    ours = from_keras(model, layers=["g1", "g2"])
    assert ours.num_layers == 2 and ours.dropout == 0.3
    path = tmp_path / "functional.keras"
    model.save(path)
    assert same_state(from_keras_file(path, layers=["g1", "g2"]), ours)
    sub = keras.Model(inp, g2)
    x = inputs()
    with torch.no_grad():
        assert max_err(ours.eval()(x)[0], knp(keras, sub(x.numpy()))) < TOL


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("layers,bidirectional", [(2, False), (2, True)])
def test_saved_files_read_with_h5py(keras, tmp_path, layers, bidirectional, reset_after):
    model = stack(keras, layers=layers, bidirectional=bidirectional, reset_after=reset_after)
    live = from_keras(model)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    stated = {"activation": "tanh", "recurrent_activation": "sigmoid", "go_backwards": False}  # not in the file
    if bidirectional:
        stated["merge_mode"] = "concat"
    for name in ("m.keras", "m.weights.h5"):
        loaded = from_keras_file(tmp_path / name, **(stated if name.endswith(".weights.h5") else {}))
        assert same_state(loaded, live), name
        assert (loaded.num_layers, loaded.bidirectional, loaded.reset_after) == (layers, bidirectional, reset_after)
    x = inputs()
    with torch.no_grad():
        assert max_err(loaded(x)[0], knp(keras, model(x.numpy()))) < TOL


def test_weights_file_without_bias_needs_reset_after(keras, tmp_path):
    model = stack(keras, use_bias=False, reset_after=False)
    model.save_weights(tmp_path / "nobias.weights.h5")
    with pytest.raises(InteropError, match="reset_after="):
        from_keras_file(tmp_path / "nobias.weights.h5", assume_defaults=True)
    ours = from_keras_file(tmp_path / "nobias.weights.h5", reset_after=False, assume_defaults=True)
    assert not ours.bias and not ours.reset_after
    x = inputs()
    with torch.no_grad():
        assert max_err(ours(x)[0], knp(keras, model(x.numpy()))) < TOL


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_to_keras_matches_fastgru(keras, reset_after, bias):
    ours = randomize_(fastgru.nn.GRU(I, H, 2, bias=bias, bidirectional=True, reset_after=reset_after))
    theirs = to_keras(ours)
    x = torch.randn(T, B, I)  # fastgru time-major, Keras batch-major
    with torch.no_grad():
        want = ours(x)[0].transpose(0, 1)
    assert max_err(knp(keras, theirs(x.transpose(0, 1).numpy())), want) < TOL
    back = from_keras(theirs, batch_first=False)
    if bias and not reset_after:
        # one Keras bias per gate: b_ih + b_hh is folded in, same math; exact once b_hh is zero
        for k in range(4):
            sfx = ("", "_reverse")[k % 2]
            name = f"l{k // 2}{sfx}"
            folded = getattr(ours, f"bias_ih_{name}") + getattr(ours, f"bias_hh_{name}")
            assert torch.equal(getattr(back, f"bias_ih_{name}"), folded)
            assert not getattr(back, f"bias_hh_{name}").any()
        with torch.no_grad():
            for p in (n for n, _ in ours.named_parameters() if n.startswith("bias_hh")):
                getattr(ours, p).zero_()
        back = from_keras(to_keras(ours), batch_first=False)
    assert same_state(back, ours)


def test_cells_both_ways(keras):
    cell = keras.layers.GRUCell(H, reset_after=False)
    cell.build((None, I))
    fill_(cell)
    ours = from_keras(cell)
    assert type(ours) is fastgru.nn.GRUCell
    x, h = torch.randn(B, I), torch.randn(B, H)
    got = ours(x, h)
    want, _ = cell(x.numpy(), h.numpy())
    assert max_err(got.detach(), knp(keras, want)) < TOL
    assert same_state(from_keras(to_keras(ours)), ours)


def test_unsupported_options_are_refused_by_name(keras):
    def layer(**kw):
        gru = keras.layers.GRU(H, **kw)
        gru.build((B, None, I))  # a stateful layer needs a static batch size
        return gru

    for kw, pattern in [
        ({"activation": "elu"}, "activation='elu'"),
        ({"recurrent_activation": "relu"}, "recurrent_activation='relu'"),
        ({"go_backwards": True}, "go_backwards"),
        ({"stateful": True}, "stateful"),
    ]:
        with pytest.raises(InteropError, match=pattern):
            from_keras(layer(**kw))
    bi = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True), merge_mode="sum")
    bi.build((None, None, I))
    with pytest.raises(InteropError, match="merge_mode='sum'"):
        from_keras(bi)
    with pytest.raises(InteropError, match="use_bias"):
        from_keras([layer(return_sequences=True), layer(use_bias=False)])
    regularized = layer(kernel_regularizer="l2")
    with pytest.raises(InteropError, match="kernel_regularizer.*ignore_training_options"):
        from_keras(regularized)
    with pytest.warns(UserWarning, match="kernel_regularizer"):
        from_keras(regularized, ignore_training_options=True)
    with pytest.warns(UserWarning, match="separate mask per gate"):
        assert from_keras(layer(recurrent_dropout=0.2)).recurrent_dropout == 0.2
    lstm = keras.layers.LSTM(H)
    with pytest.raises(InteropError, match="LSTM"):
        from_keras(lstm)
    with pytest.raises(InteropError, match="zoneout"):
        to_keras(fastgru.nn.GRU(I, H, zoneout=0.1))
    with pytest.raises(InteropError, match="hard_sigmoid"):
        to_keras(fastgru.nn.GRU(I, H, gate_activation="hard_sigmoid"))  # (0.2, 0.5) is not Keras 3's


def test_bad_files_give_clear_errors(keras, tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InteropError, match="not a zip"):
        from_keras_file(junk)
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    with pytest.raises(InteropError, match="config.json"):
        from_keras_file(tmp_path / "empty.keras")
    (tmp_path / "legacy.h5").write_bytes(b"")
    with pytest.raises(InteropError, match="legacy Keras 2"):
        from_keras_file(tmp_path / "legacy.h5")
    with pytest.raises(FileNotFoundError):
        from_keras_file(tmp_path / "missing.keras")
    model = stack(keras, layers=1)
    model.save(tmp_path / "ok.keras")
    data = (tmp_path / "ok.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(InteropError):
        from_keras_file(tmp_path / "cut.keras")


def test_frozen_keras_layers_give_frozen_parameters(keras):
    model = stack(keras, layers=2)
    model.layers[0].trainable = False
    ours = from_keras(model)
    frozen = {n for n, p in ours.named_parameters() if not p.requires_grad}
    assert frozen == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}


def test_no_warnings_on_the_plain_path(keras):
    model = stack(keras, layers=2, bidirectional=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_keras(model)
