"""The optimization loop with a random-weights VGG19 on images of a few dozen pixels."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from conftest import make_rgb
from stylecore import optim
from stylecore.transfer import DIVERGENCE_FACTOR, IterationRecord, TransferSettings, stylize

CONTENT_RGB = make_rgb(32, 40, seed=0)  # height 32, width 40
STYLE_RGB = make_rgb(36, 32, seed=10)


def run(extractor, optimizer="adam", content=CONTENT_RGB, style=STYLE_RGB, callback=None, **settings):
    optimizer = optimizer if isinstance(optimizer, optim.Optimizer) else optim.make_optimizer(optimizer)
    return stylize(extractor, content, style, optimizer, TransferSettings(**settings), callback)


def test_adam_lowers_loss(extractor):
    result = run(extractor, iterations=6)

    assert result.status == "succeeded"
    assert result.iterations == 6
    assert result.history[-1].total_loss < result.history[0].total_loss
    assert result.best_loss < result.history[0].total_loss
    assert result.best_loss == min(r.total_loss for r in result.history)
    assert result.image.dtype == np.uint8
    assert result.image.shape == (32, 40, 3)


def test_history_fields_and_callback(extractor):
    seen = []

    result = run(extractor, iterations=3, tv_weight=1e-3, callback=seen.append)

    assert seen == result.history
    assert [r.iteration for r in result.history] == [0, 1, 2]
    assert [f.name for f in dataclasses.fields(IterationRecord)] == [
        "iteration", "total_loss", "style_loss", "content_loss", "tv_loss", "elapsed_s", "size_px",
    ]
    for record in result.history:
        assert record.total_loss == pytest.approx(record.style_loss + record.content_loss + record.tv_loss, rel=1e-5)
        assert record.tv_loss > 0
    assert all(a.elapsed_s < b.elapsed_s for a, b in zip(result.history, result.history[1:]))
    assert result.seconds_per_iteration > 0


def test_tv_loss_zero_by_default(extractor):
    result = run(extractor, iterations=1)

    assert result.history[0].tv_loss == 0.0


def test_content_init_starts_at_content(extractor):
    result = run(extractor, iterations=1, init="content")

    # With one iteration the best image is the initial one.
    assert result.history[0].content_loss == 0.0
    np.testing.assert_array_equal(result.image, CONTENT_RGB)


def test_style_init_resized_to_content(extractor):
    result = run(extractor, iterations=1, init="style")

    assert result.image.shape == CONTENT_RGB.shape
    assert result.history[0].content_loss > 0


def test_style_init_same_size_is_style(extractor):
    style = make_rgb(32, 40, seed=11)

    result = run(extractor, style=style, iterations=1, init="style")

    assert np.max(np.abs(result.image.astype(int) - style.astype(int))) <= 1
    assert result.history[0].style_loss < 1e-3 * run(extractor, style=style, iterations=1).history[0].style_loss


def test_noise_init_depends_on_seed(extractor):
    first = run(extractor, iterations=1, init="noise", seed=1)
    again = run(extractor, iterations=1, init="noise", seed=1)
    other = run(extractor, iterations=1, init="noise", seed=2)

    np.testing.assert_array_equal(first.image, again.image)
    assert np.any(first.image != other.image)
    assert first.history[0].content_loss > 0
    # Uniform noise in 0-255 has a wide spread, unlike the smooth content image.
    assert first.image.std() > 60


def test_time_budget_stops_early(extractor):
    result = run(extractor, iterations=50, time_budget_s=1e-3)

    assert result.status == "timed_out"
    assert result.iterations == 1
    assert np.all(np.isfinite(result.image))


def test_huge_learning_rate_diverges(extractor):
    # Clipping keeps the loss finite at α = 1e6, but it jumps past DIVERGENCE_FACTOR times the start.
    result = run(extractor, optim.Adam(learning_rate=1e6), iterations=10)

    assert result.status == "diverged"
    assert result.iterations == 2
    assert np.isfinite(result.history[1].total_loss)
    assert result.history[1].total_loss > DIVERGENCE_FACTOR * result.history[0].total_loss
    assert result.best_iteration == 0
    assert result.image.dtype == np.uint8
    np.testing.assert_array_equal(result.image, CONTENT_RGB)


class AdamThenNaN(optim.Adam):
    """Adam whose third update writes NaN into the image, to force a non-finite loss."""

    def apply_gradient(self, gradient, variable):
        super().apply_gradient(gradient, variable)
        variable.assign(tf.where(self.step >= 3.0, float("nan"), variable))


def test_nan_loss_diverges_with_finite_image(extractor):
    result = run(extractor, AdamThenNaN(learning_rate=1.0), iterations=10)

    assert result.status == "diverged"
    assert result.iterations == 4
    assert np.isnan(result.history[-1].total_loss)
    assert np.isfinite(result.best_loss)
    assert result.best_iteration in (0, 1, 2)
    assert result.image.dtype == np.uint8
    assert result.image.shape == CONTENT_RGB.shape


def test_runs_deterministic_for_seed(extractor):
    first = run(extractor, optim.Adam(), iterations=3, init="noise", seed=5)
    second = run(extractor, optim.Adam(), iterations=3, init="noise", seed=5)

    np.testing.assert_array_equal(first.image, second.image)
    assert [r.total_loss for r in first.history] == [r.total_loss for r in second.history]


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_steps_per_call_keeps_results(extractor, optimizer):
    one_per_call = run(extractor, optimizer, iterations=6, steps_per_call=1)
    several_per_call = run(extractor, optimizer, iterations=6, steps_per_call=4)

    assert several_per_call.iterations == one_per_call.iterations == 6
    np.testing.assert_allclose([r.total_loss for r in several_per_call.history],
                               [r.total_loss for r in one_per_call.history], rtol=1e-6)
    assert several_per_call.best_iteration == one_per_call.best_iteration
    np.testing.assert_array_equal(several_per_call.image, one_per_call.image)


def test_callback_gets_every_record_in_order(extractor):
    seen = []

    result = run(extractor, iterations=7, steps_per_call=3, callback=seen.append)

    # Calls of 1, 3 and 3 steps.
    assert [r.iteration for r in seen] == list(range(7))
    assert seen == result.history


def test_lbfgs_in_loop_lowers_loss(extractor):
    result = run(extractor, "lbfgs", iterations=4)

    losses = [r.total_loss for r in result.history]
    assert result.status == "succeeded"
    assert result.iterations == 4
    # The Armijo line search accepts only decreasing steps.
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert result.image.dtype == np.uint8


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("init", "zeros", "init must be one of content, noise, style, got 'zeros'"),
        ("iterations", 0, "iterations must be at least 1, got 0"),
        ("time_budget_s", 0.0, "time_budget_s must be positive or None for no limit, got 0.0"),
        ("tv_weight", -1.0, "tv_weight must be at least 0, got -1.0"),
        ("steps_per_call", 0, "steps_per_call must be at least 1, got 0"),
        ("coarse_sizes", (20, 20), r"coarse_sizes must be increasing sizes of at least 16 px, got \[20, 20\]"),
        ("coarse_sizes", (8,), r"coarse_sizes must be increasing sizes of at least 16 px, got \[8\]"),
        ("coarse_iterations", 0, "coarse_iterations must be at least 1, got 0"),
    ],
)
def test_invalid_settings_message(field, value, message):
    with pytest.raises(ValueError, match=message):
        TransferSettings(**{field: value})


def test_coarse_levels_then_full_size(extractor):
    seen = []
    result = run(extractor, iterations=2, coarse_sizes=(20, 28), coarse_iterations=3, callback=seen.append)

    assert seen == result.history
    assert [r.iteration for r in result.history] == list(range(8))
    assert [r.size_px for r in result.history] == [20] * 3 + [28] * 3 + [40] * 2
    assert result.status == "succeeded"
    assert result.iterations == 8
    assert result.image.shape == (32, 40, 3)
    # The best comes from the full-size level, whose losses are on the full image.
    assert result.best_iteration in (6, 7)
    assert result.best_loss == min(r.total_loss for r in result.history[6:])


def test_full_size_starts_from_upscaled_result(extractor):
    plain = run(extractor, iterations=1, optimizer=optim.Adam(learning_rate=20.0))
    coarse = run(extractor, iterations=1, optimizer=optim.Adam(learning_rate=20.0), coarse_sizes=(20,),
                 coarse_iterations=4)

    # Iteration 0 of a plain run is the content image; the coarse run's first full-size image is not.
    assert coarse.history[-1].size_px == 40
    assert coarse.history[-1].content_loss > 10 * max(plain.history[0].content_loss, 1e-6)
    assert not np.array_equal(coarse.image, CONTENT_RGB)


def test_coarse_time_budget_returns_full_size(extractor):
    result = run(extractor, iterations=50, coarse_sizes=(20, 28), coarse_iterations=50, time_budget_s=1e-3)

    assert result.status == "timed_out"
    # The budget ran out in the first call at 20 px; 28 px is skipped and full size gets one call.
    assert [r.size_px for r in result.history] == [20, 40]
    assert result.image.shape == (32, 40, 3)


@pytest.mark.parametrize(
    ("coarse_sizes", "message"),
    [
        ((40,), "coarse size 40 px is not below the content image's longer side of 40 px"),
        ((18,), "coarse size 18 px scales the content or style image to 14 px on one side, below the 16 px"),
    ],
)
def test_coarse_sizes_checked_against_the_image(extractor, coarse_sizes, message):
    with pytest.raises(ValueError, match=message):
        run(extractor, iterations=1, coarse_sizes=coarse_sizes)
