"""from_keras on whole Keras models: Embedding (mask_zero), GRU, Bidirectional, Dense, Dropout, Activation.

The converted torch module (fastgru GRUs inside) must give Keras' (torch backend) own outputs on fresh
random weights, for left-padded input (keras.utils.pad_sequences' default), right-padded input and
masked steps inside the sequences (holes);
layers or masks it cannot reproduce are refused by name.
"""


import numpy as np
import pytest
import torch
from interop_util import TOL, fill_, max_err

from fastgru.interop import InteropError, from_keras
from fastgru.interop.keras_model import KerasModel

VOCAB, E, H, CLASSES = 30, 6, 7, 5
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def token_batch(keras, padding: str, batch: int = 6, longest: int = 9):
    """Ragged token sequences (ids 1..VOCAB-1, one of full length) padded with zeros by Keras itself;
    padding="holes": left-padded, then zeros (masked steps) punched inside the sequences too."""
    lengths = torch.randint(1, longest + 1, (batch,)).tolist()
    lengths[0] = longest
    seqs = [torch.randint(1, VOCAB, (n,)).tolist() for n in lengths]
    tokens = keras.utils.pad_sequences(seqs, padding="pre" if padding == "holes" else padding)
    if padding == "holes":
        tokens = tokens * (torch.rand(tokens.shape) < 0.7).numpy()
        tokens[:, -1] = np.maximum(tokens[:, -1], 1)  # every sequence keeps a real step
    return tokens


def agree(keras, model, ours, x) -> float:
    want = keras.ops.convert_to_numpy(model(x))
    with torch.no_grad():
        got = ours(torch.as_tensor(x))
    return max_err(got, want)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("padding", ["pre", "post", "holes"])
def test_tutorial_model_converts_in_one_call(keras, padding, reset_after):
    """Embedding(mask_zero=True) -> GRU -> Dense(softmax), the tutorial model; pad_sequences pads on the
    left by default ("pre"), which the GRU's mask= runs exactly."""
    model = fill_(keras.Sequential([
        keras.Input((None,), dtype="int32"),
        keras.layers.Embedding(VOCAB, E, mask_zero=True),
        keras.layers.GRU(H, reset_after=reset_after),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ]))
    ours = from_keras(model)
    assert isinstance(ours, KerasModel) and not ours.training
    assert agree(keras, model, ours, token_batch(keras, padding)) < TOL


@pytest.mark.parametrize("padding", ["pre", "post", "holes"])
def test_functional_chain_with_masks_stacks_and_heads(keras, padding):
    """Bidirectional -> Dropout -> GRU(return_sequences) -> Dense(relu) -> Activation per step, masked."""
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, E, mask_zero=True)(tokens)
    x = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True))(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.GRU(H, return_sequences=True, recurrent_activation="hard_sigmoid")(x)
    x = keras.layers.Dense(4, activation="relu")(x)
    x = keras.layers.Activation("sigmoid")(x)
    model = fill_(keras.Model(tokens, x))
    ours = from_keras(model)
    assert agree(keras, model, ours, token_batch(keras, padding)) < TOL


def test_float_input_without_mask(keras):
    model = fill_(keras.Sequential([
        keras.Input((None, 3)),
        keras.layers.Bidirectional(keras.layers.GRU(H)),
        keras.layers.Dense(2),
    ]))
    x = np.random.default_rng(int(torch.randint(0, 2**31, ()))).normal(size=(4, 8, 3)).astype("float32")
    assert agree(keras, model, from_keras(model), x) < TOL


def test_unsupported_layers_and_masks_are_refused(keras):
    def seq(*layers, dtype="int32"):
        return keras.Sequential([keras.Input((None,), dtype=dtype), *layers])

    with pytest.raises(InteropError, match=r"'lstm\w*' \(LSTM\) is not supported"):
        from_keras(seq(keras.layers.Embedding(VOCAB, E), keras.layers.LSTM(H, name="lstm_here")))
    with pytest.raises(InteropError, match="activation 'mish'"):
        from_keras(seq(keras.layers.Embedding(VOCAB, E), keras.layers.GRU(H), keras.layers.Dense(2, activation="mish")))
    with pytest.raises(InteropError, match="return_state"):
        from_keras(seq(keras.layers.Embedding(VOCAB, E), keras.layers.GRU(H, return_state=True)))
    with pytest.raises(InteropError, match="go_backwards"):
        from_keras(seq(keras.layers.Embedding(VOCAB, E), keras.layers.GRU(H, go_backwards=True)))
    a = keras.Input((None, 3))
    b = keras.Input((None, 3))
    branched = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Add()([a, b])))
    with pytest.raises(InteropError, match="several input layers"):
        from_keras(branched)
