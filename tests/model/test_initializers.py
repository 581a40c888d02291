import keras
import numpy as np

from keras_vit import ViT, skip_random_init
from keras_vit.model.initializers import truncated_normal
from tests.conftest import tiny_config, to_numpy


def test_truncated_normal_by_default_zeros_when_skipping():
    assert isinstance(truncated_normal(0.02), keras.initializers.TruncatedNormal)
    assert truncated_normal(0.02).get_config()["stddev"] == 0.02
    with skip_random_init():
        assert isinstance(truncated_normal(0.02), keras.initializers.Zeros)
    assert isinstance(truncated_normal(0.02), keras.initializers.TruncatedNormal)


def test_model_built_while_skipping_has_no_random_weights():
    with skip_random_init():
        model = ViT(tiny_config(classes=3))
    for variable in model.weights:
        value = to_numpy(variable)
        expected = 1.0 if variable.path.endswith("gamma") else 0.0
        np.testing.assert_array_equal(value, np.full_like(value, expected), err_msg=variable.path)
    random = ViT(tiny_config(classes=3))
    assert np.abs(to_numpy(random.embeddings.cls_token)).max() > 0
