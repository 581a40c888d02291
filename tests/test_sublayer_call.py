"""`call_sublayer`: a sublayer's `call` outside training, its `__call__` otherwise."""

import keras
import numpy as np
import pytest

from keras_vit.sublayer_call import call_sublayer
from tests.conftest import to_numpy


def count_calls(layer, method: str) -> list:
    """Wraps `layer.<method>` so that each call appends to the returned list."""
    calls, original = [], getattr(layer, method)

    def counted(*args, **kwargs):
        calls.append(method)
        return original(*args, **kwargs)

    setattr(layer, method, counted)
    return calls


class CountingDense(keras.layers.Dense):
    """A Dense layer that counts how often Keras' `__call__` runs."""

    keras_calls = 0

    def __call__(self, *args, **kwargs):
        CountingDense.keras_calls += 1
        return super().__call__(*args, **kwargs)


@pytest.fixture
def dense(rng):
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.weights])
    return layer


@pytest.mark.parametrize("training", [None, False])
def test_outside_training_the_sublayer_call_runs_directly(rng, dense, training):
    x = keras.ops.convert_to_tensor(rng.standard_normal((2, 4)).astype("float32"))
    counting = CountingDense(3)
    counting.build((None, 4))
    counting.set_weights(dense.get_weights())
    expected = to_numpy(counting(x))
    CountingDense.keras_calls = 0
    calls = count_calls(counting, "call")
    np.testing.assert_allclose(to_numpy(call_sublayer(counting, x, training)), expected, atol=1e-6)
    assert calls == ["call"] and CountingDense.keras_calls == 0
    np.testing.assert_allclose(to_numpy(call_sublayer(counting, x, True)), expected, atol=1e-6)
    assert CountingDense.keras_calls == 1


def test_in_training_the_sublayer_goes_through_keras(rng):
    dropout = keras.layers.Dropout(0.5, seed=1)
    x = keras.ops.ones((64, 64))
    np.testing.assert_array_equal(to_numpy(call_sublayer(dropout, x)), np.ones((64, 64)))
    dropped = to_numpy(call_sublayer(dropout, x, training=True))
    assert 0.3 < (dropped == 0).mean() < 0.7  # dropout ran: __call__ passed training on


def test_a_quantized_sublayer_goes_through_keras(rng, dense):
    x = keras.ops.convert_to_tensor(rng.standard_normal((2, 4)).astype("float32"))
    dense.quantize("int8")
    expected = to_numpy(dense(x))
    calls = count_calls(dense, "quantized_call")
    np.testing.assert_allclose(to_numpy(call_sublayer(dense, x)), expected, atol=1e-6)
    assert calls == ["quantized_call"]


def test_keyword_arguments_reach_the_sublayer(rng):
    attention = keras.layers.MultiHeadAttention(2, 4)
    x = keras.ops.convert_to_tensor(rng.standard_normal((1, 5, 8)).astype("float32"))
    attention(x, x)
    _, scores = call_sublayer(attention, x, None, value=x, return_attention_scores=True)
    assert tuple(scores.shape) == (1, 2, 5, 5)
