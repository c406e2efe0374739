"""`stylize_batch` against sequential `stylize` runs, with a random-weights VGG19 on images of a few dozen pixels."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import make_rgb
from stylecore import optim
from stylecore.transfer import TransferSettings, batch_optimizer, stylize, stylize_batch

CONTENT_RGB = make_rgb(32, 40, seed=0)  # height 32, width 40
STYLE_RGB = make_rgb(36, 32, seed=10)
ITERATIONS = 4

# Three configurations per optimizer, including a default one.
CONFIGURATIONS = {
    "adam": [{}, {"learning_rate": 2.0}, {"learning_rate": 10.0, "beta1": 0.5}],
    "gd": [{}, {"learning_rate": 3e-4}, {"learning_rate": 1e-4, "momentum": 0.9}],
    "adagrad": [{}, {"learning_rate": 3.0}, {"learning_rate": 20.0, "initial_accumulator_value": 1.0}],
}

# Batched and single-image convolutions may sum in different orders, so float32 results differ slightly.
LOSS_RTOL = 1e-4
MAX_PIXEL_DIFFERENCE = 1  # in uint8 pixel values


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_batch_matches_sequential_runs(extractor, name):
    settings = TransferSettings(iterations=ITERATIONS, steps_per_call=2)
    configurations = CONFIGURATIONS[name]

    batched = stylize_batch(extractor, CONTENT_RGB, STYLE_RGB,
                            [optim.make_optimizer(name, **c) for c in configurations], settings)
    sequential = [stylize(extractor, CONTENT_RGB, STYLE_RGB, optim.make_optimizer(name, **c), settings)
                  for c in configurations]

    assert len(batched) == len(configurations)
    for together, alone in zip(batched, sequential):
        assert together.status == alone.status == "succeeded"
        assert together.iterations == alone.iterations == ITERATIONS
        np.testing.assert_allclose([r.total_loss for r in together.history],
                                   [r.total_loss for r in alone.history], rtol=LOSS_RTOL)
        np.testing.assert_allclose([r.style_loss for r in together.history],
                                   [r.style_loss for r in alone.history], rtol=LOSS_RTOL)
        assert together.best_iteration == alone.best_iteration
        assert together.best_loss == pytest.approx(alone.best_loss, rel=LOSS_RTOL)
        assert np.max(np.abs(together.image.astype(int) - alone.image.astype(int))) <= MAX_PIXEL_DIFFERENCE


def test_coarse_batch_matches_sequential(extractor):
    settings = TransferSettings(iterations=2, coarse_sizes=(20,), coarse_iterations=3)
    configurations = CONFIGURATIONS["adam"]

    batched = stylize_batch(extractor, CONTENT_RGB, STYLE_RGB,
                            [optim.make_optimizer("adam", **c) for c in configurations], settings)
    sequential = [stylize(extractor, CONTENT_RGB, STYLE_RGB, optim.make_optimizer("adam", **c), settings)
                  for c in configurations]

    for together, alone in zip(batched, sequential):
        assert [r.size_px for r in together.history] == [r.size_px for r in alone.history] == [20] * 3 + [40] * 2
        np.testing.assert_allclose([r.total_loss for r in together.history], [r.total_loss for r in alone.history],
                                   rtol=LOSS_RTOL)
        assert np.abs(together.image.astype(int) - alone.image.astype(int)).max() <= MAX_PIXEL_DIFFERENCE


def test_batch_configurations_differ(extractor):
    results = stylize_batch(extractor, CONTENT_RGB, STYLE_RGB,
                            [optim.Adam(learning_rate=1.0), optim.Adam(learning_rate=10.0)],
                            TransferSettings(iterations=3))

    assert results[0].history[0].total_loss == results[1].history[0].total_loss
    assert results[0].history[-1].total_loss != results[1].history[-1].total_loss
    assert results[0].image.shape == results[1].image.shape == (32, 40, 3)
    assert results[0].image.dtype == np.uint8


def test_batch_callback_gets_index(extractor):
    seen = []

    results = stylize_batch(extractor, CONTENT_RGB, STYLE_RGB, [optim.Adam(), optim.Adam(learning_rate=1.0)],
                            TransferSettings(iterations=3), callback=lambda index, record: seen.append((index, record)))

    assert [record for index, record in seen if index == 0] == results[0].history
    assert [record for index, record in seen if index == 1] == results[1].history


class AdamNaNForFirstImage(optim.Adam):
    """Adam that writes NaN into the first image of the batch from its second update on."""

    def apply_gradient(self, gradient, variable):
        super().apply_gradient(gradient, variable)
        first_image = tf.range(tf.shape(variable)[0])[:, tf.newaxis, tf.newaxis, tf.newaxis] == 0
        variable.assign(tf.where(tf.logical_and(first_image, self.step >= 2.0), float("nan"), variable))


def test_batch_divergence_stops_one_image(extractor):
    optimizers = [AdamNaNForFirstImage(), AdamNaNForFirstImage()]

    diverged, running = stylize_batch(extractor, CONTENT_RGB, STYLE_RGB, optimizers,
                                      TransferSettings(iterations=6, steps_per_call=4))

    assert diverged.status == "diverged"
    assert diverged.iterations == 3
    assert np.isnan(diverged.history[-1].total_loss)
    assert diverged.best_iteration in (0, 1)
    assert running.status == "succeeded"
    assert running.iterations == 6
    assert np.all(np.isfinite([r.total_loss for r in running.history]))


def test_batch_time_budget_stops_all(extractor):
    results = stylize_batch(extractor, CONTENT_RGB, STYLE_RGB, [optim.Adam(), optim.Adam()],
                            TransferSettings(iterations=50, time_budget_s=1e-3))

    assert [r.status for r in results] == ["timed_out", "timed_out"]
    assert [r.iterations for r in results] == [1, 1]


def test_batch_optimizer_stacks_hyperparameters():
    merged = batch_optimizer([optim.Adam(learning_rate=1.0), optim.Adam(learning_rate=2.0, beta2=0.99)])

    assert isinstance(merged, optim.Adam)
    assert merged.learning_rate.shape == (2, 1, 1, 1)
    np.testing.assert_array_equal(merged.learning_rate.numpy().ravel(), [1.0, 2.0])
    np.testing.assert_allclose(merged.beta2.numpy().ravel(), [0.999, 0.99])


@pytest.mark.parametrize(
    "optimizers, message",
    [
        ([], "needs at least one optimizer"),
        ([optim.Adam(), optim.GradientDescent()], "needs optimizers of one class, got Adam and GradientDescent"),
        ([optim.LBFGS()], "does not support lbfgs"),
        ([optim.Adam(learning_rate=[1.0, 2.0])], "needs scalar hyperparameters, got learning_rate"),
    ],
)
def test_batch_rejects_invalid_optimizers(extractor, optimizers, message):
    with pytest.raises(ValueError, match=message):
        stylize_batch(extractor, CONTENT_RGB, STYLE_RGB, optimizers, TransferSettings(iterations=1))


def test_coarse_divergence_carries_over(extractor):
    optimizers = [AdamNaNForFirstImage(), AdamNaNForFirstImage()]

    diverged, running = stylize_batch(extractor, CONTENT_RGB, STYLE_RGB, optimizers,
                                      TransferSettings(iterations=2, coarse_sizes=(20,), coarse_iterations=4))

    assert diverged.status == "diverged"
    # Recorded until the NaN at 20 px, then carried along at full size without records.
    assert [r.size_px for r in diverged.history] == [20, 20, 20]
    assert np.isfinite(diverged.best_loss)
    assert diverged.image.shape == (32, 40, 3)
    assert running.status == "succeeded"
    assert [r.size_px for r in running.history] == [20] * 4 + [40] * 2
