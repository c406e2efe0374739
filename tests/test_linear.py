"""Tests for stylecore/linear.py: the data set, the model, and each optimizer against tf.keras."""

import numpy as np
import pytest
import tensorflow as tf

from stylecore import linear

# Float32 trajectories of 300 steps: the hand-written and the Keras update
# rules differ in the order of float operations and in where ε enters
# (Keras Adagrad uses √(r + ε), Keras Adam scales ε by √(1 − β2ᵗ)).
TRAJECTORY_RTOL = 1e-4
TRAJECTORY_ATOL = 1e-4


def test_dataset_same_for_same_seed():
    features, targets = linear.make_dataset(seed=7)
    features_again, targets_again = linear.make_dataset(seed=7)

    np.testing.assert_array_equal(features.numpy(), features_again.numpy())
    np.testing.assert_array_equal(targets.numpy(), targets_again.numpy())


def test_dataset_differs_between_seeds():
    features, _ = linear.make_dataset(seed=1)
    other, _ = linear.make_dataset(seed=2)

    assert not np.allclose(features.numpy(), other.numpy())


def test_dataset_first_values_default_seed():
    features, targets = linear.make_dataset()

    assert features.shape == (2000, 2)
    assert targets.shape == (2000, 1)
    assert features.dtype == tf.float32
    # Values drawn with TensorFlow 2.21 on CPU, seed 10605.
    np.testing.assert_allclose(features.numpy()[:2], [[1.443334, 0.4149213], [0.02182219, -0.9680819]], rtol=1e-5)
    np.testing.assert_allclose(targets.numpy()[:2, 0], [8.38087, -1.1940436], rtol=1e-5)


def test_dataset_noise_has_unit_variance():
    features, targets = linear.make_dataset()
    residual = targets - linear.predict(features, tf.constant([linear.TRUE_WEIGHTS]), linear.TRUE_BIAS)

    assert abs(float(tf.math.reduce_variance(residual)) - 1.0) < 0.1


def test_untrained_model_error_for_one_example():
    weights = tf.constant([linear.INITIAL_WEIGHTS])
    prediction = linear.predict(tf.constant([[1.0, 2.0]]), weights, tf.constant(linear.INITIAL_BIAS))

    assert float(prediction[0, 0]) == 25.0
    assert float(linear.mean_squared_error(prediction, tf.constant([[3.0]]))) == 484.0


def keras_trajectory(name: str, hyperparameters: dict, steps: int, seed: int = linear.DEFAULT_SEED):
    """Fit with the tf.keras optimizer matching `name`, on the batches `linear.train` draws."""
    settings = {**linear.study_defaults(name), **hyperparameters}
    batch_size = linear.resolve_batch_size(settings["batch_size"], linear.DEFAULT_EXAMPLES)
    if name in ("gd", "sgd"):
        keras_optimizer = tf.keras.optimizers.SGD(settings["learning_rate"], momentum=settings["momentum"])
    elif name == "adagrad":
        keras_optimizer = tf.keras.optimizers.Adagrad(settings["learning_rate"], settings["initial_accumulator_value"],
                                                      epsilon=settings["epsilon"])
    else:
        keras_optimizer = tf.keras.optimizers.Adam(settings["learning_rate"], beta_1=settings["beta1"],
                                                   beta_2=settings["beta2"], epsilon=settings["epsilon"])

    features, targets = linear.make_dataset(seed)
    batches = linear.sample_batches(seed, steps, batch_size, linear.DEFAULT_EXAMPLES) if batch_size else None
    weights = tf.Variable([linear.INITIAL_WEIGHTS])
    bias = tf.Variable(linear.INITIAL_BIAS)
    weight_rows, biases = [], []
    for index in range(steps):
        batch_features, batch_targets = features, targets
        if batches is not None:
            batch_features, batch_targets = tf.gather(features, batches[index]), tf.gather(targets, batches[index])
        keras_optimizer.apply_gradients(zip(linear.gradients(batch_features, batch_targets, weights, bias),
                                            [weights, bias]))
        weight_rows.append(weights.numpy()[0])
        biases.append(float(bias.numpy()))
    return np.array(weight_rows), np.array(biases)


@pytest.mark.parametrize("name, hyperparameters", [
    ("gd", {}),
    ("gd", {"momentum": 0.9, "learning_rate": 0.005}),
    ("sgd", {}),
    ("adagrad", {}),
    ("adam", {}),
    ("adam", {"batch_size": 16}),
])
def test_trajectory_matches_keras(name, hyperparameters):
    result = linear.train(name, hyperparameters)
    keras_weights, keras_biases = keras_trajectory(name, hyperparameters, linear.DEFAULT_STEPS)

    assert result.status == linear.SUCCEEDED
    np.testing.assert_allclose(result.weights, keras_weights, rtol=TRAJECTORY_RTOL, atol=TRAJECTORY_ATOL)
    np.testing.assert_allclose(result.biases, keras_biases, rtol=TRAJECTORY_RTOL, atol=TRAJECTORY_ATOL)


def test_gd_defaults_reach_noise_level():
    result = linear.train("gd")

    assert result.steps_run == 300
    assert result.final_loss < 1.05
    np.testing.assert_allclose(result.final_weights, linear.TRUE_WEIGHTS, atol=0.1)
    assert abs(result.final_bias - linear.TRUE_BIAS) < 0.1


def test_loss_recorded_after_every_step():
    result = linear.train("gd", steps=5)
    features, targets = linear.make_dataset()
    last = linear.mean_squared_error(
        linear.predict(features, tf.constant([result.final_weights]), result.final_bias), targets)

    assert result.losses.shape == (5,)
    assert result.weights.shape == (5, 2)
    assert result.biases.shape == (5,)
    assert result.final_loss == pytest.approx(float(last), rel=1e-5)


def test_huge_learning_rate_diverges():
    result = linear.train("gd", {"learning_rate": 10.0}, steps=100)

    assert result.status == linear.DIVERGED
    assert result.steps_run < 100
    assert not np.isfinite(result.final_loss)
    assert np.isfinite(result.best_loss)


def test_sgd_batches_reproduce_for_seed():
    first = linear.train("sgd", steps=20, seed=3)
    second = linear.train("sgd", steps=20, seed=3)

    np.testing.assert_array_equal(first.losses, second.losses)


def test_steps_to_threshold_counts_from_one():
    assert linear.steps_to_threshold(np.array([5.0, 2.0, 1.0, 0.5]), 1.0) == 3
    assert linear.steps_to_threshold(np.array([5.0, 2.0]), 1.0) is None


@pytest.mark.parametrize("batch_size", [0, 2001, 1.5, "half", True])
def test_invalid_batch_size_rejected(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        linear.resolve_batch_size(batch_size, 2000)


def test_unknown_optimizer_rejected():
    with pytest.raises(ValueError, match="valid optimizers: gd, sgd, adagrad, adam"):
        linear.study_defaults("rmsprop")
