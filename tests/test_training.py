"""The fine-tuning recipe: weight-decay exclusions, schedule, layer decay, loss, callbacks."""

import csv
import json

import keras
import numpy as np
import pytest

from keras_vit import ViT
from keras_vit.training import (
    BestWeights,
    ClassCrossentropy,
    LayerDecayAdamW,
    RunRecord,
    compile_for_finetuning,
    finetuning_callbacks,
    layer_decay_multipliers,
    no_weight_decay,
    warmup_cosine,
)
from tests.conftest import randomize_head, tiny_config, to_numpy

NOT_DECAYED_NAMES = {"bias", "gamma", "beta", "cls_token", "position_embedding", "mask_token"}


def tiny_classifier(**overrides):
    return ViT(tiny_config(classes=3, classifier_activation=None, **overrides))


def test_weight_decay_excludes_exactly_biases_norms_tokens_and_positions():
    model = tiny_classifier(pre_logits=True, use_mask_token=True)
    excluded = {v.path for v in no_weight_decay(model)}
    assert excluded == {v.path for v in model.trainable_variables if v.name in NOT_DECAYED_NAMES}
    decayed = {v.path for v in model.trainable_variables} - excluded
    assert decayed and all(path.endswith("/kernel") for path in decayed)
    assert {"embeddings/cls_token", "embeddings/position_embedding", "layernorm/gamma"} <= excluded


# Every family option that adds weights: layer scales, the gated MLP's gate, the
# distillation token and head, registers, no key bias.
FAMILY_OPTIONS = dict(
    distillation_token=True,
    distillation_head=True,
    num_register_tokens=2,
    layerscale_value=0.5,
    mlp_type="gated",
    key_bias=False,
)


def test_weight_decay_and_layer_decay_cover_every_family_weight():
    model = tiny_classifier(**FAMILY_OPTIONS)
    excluded = {v.path for v in no_weight_decay(model)}
    new_tables = {"embeddings/distillation_token", "embeddings/register_tokens"}
    scales = {f"encoder/layer_{i}/{s}_scale/scale" for i in (0, 1) for s in ("attention", "mlp")}
    assert new_tables | scales <= excluded
    assert "encoder/layer_1/attention/key/bias" not in {v.path for v in model.weights}
    decayed = {v.path for v in model.trainable_variables} - excluded
    assert {"encoder/layer_0/mlp_gate/kernel", "distillation_head/kernel"} <= decayed
    assert all(path.endswith("/kernel") for path in decayed)
    multipliers = layer_decay_multipliers(model, 0.5)
    assert set(multipliers) == {v.path for v in model.trainable_variables}
    for path in new_tables:
        assert multipliers[path] == 0.5**3  # with the embeddings
    assert multipliers["encoder/layer_0/attention_scale/scale"] == 0.5**2
    assert multipliers["encoder/layer_1/mlp_gate/kernel"] == 0.5
    assert multipliers["distillation_head/kernel"] == 1.0


def test_optimizer_decays_only_kernels():
    model = randomize_head(tiny_classifier())  # a zero head kernel would decay to zero anyway
    compile_for_finetuning(model, total_steps=10, learning_rate=0.1, warmup_steps=0)
    before = {v.path: to_numpy(v) for v in model.trainable_variables}
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    model.optimizer.apply(zeros, model.trainable_variables)  # only weight decay moves weights
    excluded = {v.path for v in no_weight_decay(model)}
    for variable in model.trainable_variables:
        expected = before[variable.path] * (1 if variable.path in excluded else 1 - 0.1 * 0.05)
        np.testing.assert_allclose(to_numpy(variable), expected, rtol=1e-6, err_msg=variable.path)


def test_warmup_then_cosine():
    schedule = warmup_cosine(1e-3, total_steps=110, warmup_steps=10)
    values = {step: float(schedule(step)) for step in (0, 5, 10, 60, 110)}
    assert values == pytest.approx({0: 0.0, 5: 5e-4, 10: 1e-3, 60: 5e-4, 110: 0.0}, abs=1e-9)
    with pytest.raises(ValueError, match="warmup_steps=20 must be >= 0 and below"):
        warmup_cosine(1e-3, total_steps=20, warmup_steps=20)


def test_layer_decay_multipliers_and_step_sizes():
    model = tiny_classifier()  # 2 blocks
    multipliers = layer_decay_multipliers(model, 0.5)
    assert multipliers["embeddings/cls_token"] == 0.5**3
    assert multipliers["encoder/layer_0/attention/query/kernel"] == 0.5**2
    assert multipliers["encoder/layer_1/mlp_fc2/bias"] == 0.5
    assert multipliers["layernorm/gamma"] == multipliers["head/kernel"] == 1.0
    optimizer = LayerDecayAdamW(multipliers, learning_rate=0.01, weight_decay=0.0)
    before = {v.path: to_numpy(v) for v in model.trainable_variables}
    ones = [keras.ops.ones(v.shape) for v in model.trainable_variables]
    optimizer.apply(ones, model.trainable_variables)
    for variable in model.trainable_variables:  # Adam's first step moves by exactly lr * scale
        step = before[variable.path] - to_numpy(variable)
        expected = np.full_like(step, 0.01 * multipliers[variable.path])
        np.testing.assert_allclose(step, expected, rtol=1e-3, err_msg=variable.path)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_crossentropy_with_label_smoothing(from_logits):
    scores = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], "float32")
    labels = np.array([0, 2])
    probabilities = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    targets = np.eye(3)[labels] * 0.8 + 0.2 / 3
    expected = -(targets * np.log(probabilities)).sum(-1).mean()
    loss = ClassCrossentropy(label_smoothing=0.2, from_logits=from_logits)
    got = loss(labels, scores if from_logits else probabilities)
    np.testing.assert_allclose(float(to_numpy(got)), expected, rtol=1e-5)


def test_recipe_fits_and_lowers_the_loss_on_a_fixed_batch():
    model = tiny_classifier(drop_path_rate=0.1)
    compile_for_finetuning(model, total_steps=8, learning_rate=3e-3, label_smoothing=0.1)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 3, 8)
    history = model.fit(images, labels, batch_size=8, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_frozen_backbone_trains_only_the_head():
    model = tiny_classifier()
    compile_for_finetuning(model, total_steps=4, freeze_backbone=True)
    assert {v.path for v in model.trainable_variables} == {"head/kernel", "head/bias"}
    distilled = tiny_classifier(distillation_token=True, distillation_head=True)
    compile_for_finetuning(distilled, total_steps=4, freeze_backbone=True)
    assert {v.path for v in distilled.trainable_variables} == {
        "head/kernel",
        "head/bias",
        "distillation_head/kernel",
        "distillation_head/bias",
    }
    with pytest.raises(ValueError, match="needs a model with a classification head"):
        compile_for_finetuning(ViT(tiny_config()), total_steps=4)


def test_mixed_bfloat16_training_step():
    model = ViT(tiny_config(classes=3), dtype="mixed_bfloat16")
    compile_for_finetuning(model, total_steps=2, layer_decay=0.75)
    images = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype("float32")
    history = model.fit(images, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_callbacks_write_best_weights_log_and_curves(tmp_path):
    model = tiny_classifier()
    compile_for_finetuning(model, total_steps=6, learning_rate=3e-3)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((12, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 3, 12)
    callbacks = finetuning_callbacks(tmp_path / "run")
    model.fit(
        images,
        labels,
        validation_data=(images, labels),
        epochs=3,
        batch_size=6,
        verbose=0,
        callbacks=callbacks,
    )
    best = callbacks[0]
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    accuracies = [float(row["val_accuracy"]) for row in rows]
    assert len(rows) == 3 and best.best == pytest.approx(max(accuracies))
    assert best.best_epoch == accuracies.index(max(accuracies))
    fresh = tiny_classifier()
    fresh.load_weights(str(tmp_path / "run" / "best.weights.h5"))
    np.testing.assert_array_equal(to_numpy(fresh(images)), to_numpy(model(images)))
    assert (tmp_path / "run" / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best.weights.h5",
        "history.csv",
        "training_curves.png",
    ]


def test_best_weights_needs_the_monitored_metric(tmp_path):
    model = tiny_classifier()
    compile_for_finetuning(model, total_steps=1)
    images = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(KeyError, match="monitors 'val_accuracy'.*Pass validation_data"):
        model.fit(
            images,
            np.array([0, 1]),
            epochs=1,
            verbose=0,
            callbacks=[BestWeights(tmp_path / "b.weights.h5")],
        )


def fit_run(model, directory, resume=False, epochs=2, seed=0):
    """Fits `model` on 12 random images with the recipe's callbacks; returns the callbacks."""
    compile_for_finetuning(model, total_steps=2 * epochs, learning_rate=3e-3)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((12, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 3, 12)
    callbacks = finetuning_callbacks(directory, resume=resume)
    model.fit(
        images,
        labels,
        validation_data=(images, labels),
        epochs=epochs,
        batch_size=6,
        verbose=0,
        callbacks=callbacks,
    )
    return callbacks


def test_resumed_callbacks_continue_the_history_and_keep_better_weights(tmp_path):
    fit_run(tiny_classifier(), tmp_path)
    first = list(csv.DictReader((tmp_path / "history.csv").open()))
    best_score = max(float(row["val_accuracy"]) for row in first)
    saved = (tmp_path / "best.weights.h5").read_bytes()
    model = tiny_classifier()
    model.load_weights(str(tmp_path / "best.weights.h5"))
    best = fit_run(model, tmp_path, resume=True, epochs=1, seed=1)[0]
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert rows[:2] == first and [row["epoch"] for row in rows] == ["0", "1", "2"]
    improved = float(rows[2]["val_accuracy"]) > best_score
    assert best.best == max(best_score, float(rows[2]["val_accuracy"]))
    assert ((tmp_path / "best.weights.h5").read_bytes() == saved) is not improved
    restored = tiny_classifier()  # the model ends on the best weights, old or new
    restored.load_weights(str(tmp_path / "best.weights.h5"))
    for weight, expected in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(weight), to_numpy(expected))


def test_best_weights_given_a_score_replaces_only_better_weights(tmp_path):
    model = tiny_classifier()
    path = tmp_path / "b.weights.h5"
    model.save_weights(str(path))
    saved = path.read_bytes()
    randomize_head(model)
    best = BestWeights(path, best=1.0)  # no accuracy beats 1
    compile_for_finetuning(model, total_steps=1)
    images = np.zeros((2, 32, 32, 3), "float32")
    model.fit(
        images,
        np.array([0, 1]),
        validation_data=(images, np.array([0, 1])),
        verbose=0,
        callbacks=[best],
    )
    assert path.read_bytes() == saved and best.best_epoch is None
    np.testing.assert_array_equal(to_numpy(model.head.kernel), 0)  # the saved weights restored


def test_run_record_names_the_run_that_wrote_each_artefact(tmp_path):
    (tmp_path / "a.txt").write_text("before any run")
    first = RunRecord(tmp_path, {"epochs": 3}, ["a.txt", "b.txt", "c"])
    assert first.written() == []
    (tmp_path / "b.txt").write_text("first")
    (tmp_path / "c").mkdir()
    first.on_epoch_end(0)
    first.update("interrupted")
    second = RunRecord(tmp_path, {"epochs": 1}, ["a.txt", "b.txt", "c"], resume=True)
    (tmp_path / "a.txt").write_text("second")
    (tmp_path / "c").rmdir()
    second.update("completed")
    record = json.loads((tmp_path / "run.json").read_text())
    runs = record["runs"]
    assert [(run["status"], run["epochs"], run["arguments"]) for run in runs] == [
        ("interrupted", 1, {"epochs": 3}),
        ("completed", 0, {"epochs": 1}),
    ]
    assert runs[0]["id"] != runs[1]["id"]
    assert {name: artefact["run"] for name, artefact in record["artefacts"].items()} == {
        "a.txt": runs[1]["id"],
        "b.txt": runs[0]["id"],
    }
    assert second.written() == ["a.txt"]
    fresh = RunRecord(tmp_path, {}, ["a.txt"])  # not resuming: a new record
    assert len(json.loads((tmp_path / "run.json").read_text())["runs"]) == 1
    assert fresh.written() == []
