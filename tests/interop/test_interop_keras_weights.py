"""Keras `.weights.h5` imports never guess: options the file does not record must be given, or are refused.

A weights file holds each layer's arrays and name only (checked below with h5py), so activation,
recurrent_activation, go_backwards and a Bidirectional's merge_mode must come from the caller. With
them, the import agrees with Keras (torch backend) on fresh random weights and inputs.
"""


import numpy as np
import pytest
import torch
from interop_util import TOL, max_err, scaled_err

from fastgru.interop import InteropError, from_keras_file
from fastgru.interop.keras_model import GoBackwards

B, T, I, H = 3, 7, 4, 5
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
STATED = {"activation": "tanh", "recurrent_activation": "sigmoid", "go_backwards": False}


def saved(keras, tmp_path, layer, name="m.weights.h5"):
    model = keras.Sequential([keras.Input((None, I)), layer])
    rng = np.random.default_rng(int(torch.randint(0, 2**31, ())))
    for v in model.weights:
        v.assign(rng.normal(0, 0.5, tuple(v.shape)).astype("float32"))
    model.save_weights(tmp_path / name)
    return model, tmp_path / name


def keras_out(keras, model, x):
    return keras.ops.convert_to_numpy(model(x.numpy()))


def test_weights_file_records_no_options(keras, tmp_path):
    """What the format holds: arrays and names; no activation, go_backwards or merge_mode anywhere."""
    h5py = pytest.importorskip("h5py")
    layer = keras.layers.GRU(H, go_backwards=True, activation="relu", recurrent_activation="hard_sigmoid")
    _, path = saved(keras, tmp_path, layer)
    found = []
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.append((name, {k: str(v) for k, v in obj.attrs.items()})))
    text = repr(found)
    assert "cell/vars/0" in text
    for word in ("relu", "hard_sigmoid", "go_backwards", "backwards", "activation"):
        assert word not in text


CASES = {
    "go_backwards": (dict(go_backwards=True), {"go_backwards": True}),
    "relu": (dict(activation="relu"), {"activation": "relu"}),
    "hard_sigmoid": (dict(recurrent_activation="hard_sigmoid"), {"recurrent_activation": "hard_sigmoid"}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("reset_after", [True, False])
def test_unrecorded_option_is_required_then_exact(keras, tmp_path, case, reset_after):
    keras_kw, stated = CASES[case]
    model, path = saved(keras, tmp_path, keras.layers.GRU(H, return_sequences=True, reset_after=reset_after,
                                                          **keras_kw))
    with pytest.raises(InteropError, match="activation, recurrent_activation, go_backwards.*assume_defaults=True"):
        from_keras_file(path)
    with pytest.raises(InteropError, match="go_backwards"):  # one missing is still refused, by name
        from_keras_file(path, activation=STATED["activation"], recurrent_activation=STATED["recurrent_activation"])
    ours = from_keras_file(path, **{**STATED, **stated})
    assert isinstance(ours, GoBackwards) == (case == "go_backwards")
    x = torch.randn(B, T, I)
    want = keras_out(keras, model, x)
    with torch.no_grad():
        got = ours(x)[0]
    assert scaled_err(got, want) < TOL
    # the old behaviour, now only on request: Keras' defaults give other numbers for this layer
    with torch.no_grad():
        assumed = from_keras_file(path, assume_defaults=True)(x)[0]
    assert max_err(assumed, want) > 1e-3


def test_bidirectional_needs_merge_mode(keras, tmp_path):
    layer = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True))
    model, path = saved(keras, tmp_path, layer)
    with pytest.raises(InteropError, match="merge_mode"):
        from_keras_file(path, **STATED)
    with pytest.raises(InteropError, match="merge_mode='sum' is not supported"):
        from_keras_file(path, **STATED, merge_mode="sum")
    ours = from_keras_file(path, **STATED, merge_mode="concat")
    x = torch.randn(B, T, I)
    with torch.no_grad():
        assert max_err(ours(x)[0], keras_out(keras, model, x)) < TOL


def test_weights_file_refusals(keras, tmp_path):
    _, path = saved(keras, tmp_path, keras.layers.GRU(H, return_sequences=True))
    with pytest.raises(InteropError, match="activation='elu' is not supported"):
        from_keras_file(path, **{**STATED, "activation": "elu"})
    with pytest.raises(InteropError, match="no Bidirectional layer"):
        from_keras_file(path, **STATED, merge_mode="concat")
    model = keras.Sequential([keras.Input((None, I)), keras.layers.GRU(H, return_sequences=True)])
    model.save(tmp_path / "m.keras")
    with pytest.raises(InteropError, match="only for .weights.h5"):
        from_keras_file(tmp_path / "m.keras", activation="tanh")
    two = keras.Sequential([keras.Input((None, I)), keras.layers.GRU(H, return_sequences=True, go_backwards=True),
                            keras.layers.GRU(H, return_sequences=True, go_backwards=True)])
    two.save_weights(tmp_path / "two.weights.h5")
    with pytest.raises(InteropError, match="one plain GRU layer only"):
        from_keras_file(tmp_path / "two.weights.h5", **{**STATED, "go_backwards": True})
