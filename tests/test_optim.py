"""Update rules against hand-computed trajectories and tf.keras optimizers; hyperparameter validation."""

import numpy as np
import pytest
import tensorflow as tf

from stylecore import optim

# Two gradients applied to a one-element variable starting at 1.0, for the hand-computed trajectories.
GRADIENTS = ([0.5], [-0.25])


def run_fixed_gradients(optimizer, gradients, initial, compile_step=False):
    """Apply `gradients` in order to a variable starting at `initial`; return the value after each step."""
    variable = tf.Variable(np.asarray(initial, np.float32))
    optimizer.build(variable)
    apply = tf.function(optimizer.apply_gradient) if compile_step else optimizer.apply_gradient
    trajectory = []
    for gradient in gradients:
        apply(tf.constant(np.asarray(gradient, np.float32)), variable)
        trajectory.append(variable.numpy().copy())
    return trajectory


@pytest.mark.parametrize(
    "name, hyperparameters, expected",
    [
        # m̂₁ = 0.5, v̂₁ = 0.25, so the first step is α = 0.1. Second step: m = 0.02, v = 3.1225e-4,
        # m̂ = 0.02 / 0.19, v̂ = 3.1225e-4 / 0.001999, step = 0.1 · 0.105263 / 0.395225 = 0.026634.
        ("adam", {"learning_rate": 0.1}, (0.9, 0.8733663)),
        # w₁ = 1 − 0.1 · 0.5; w₂ = 0.95 + 0.1 · 0.25.
        ("gd", {"learning_rate": 0.1}, (0.95, 0.975)),
        # v₁ = −0.05; v₂ = 0.9 · (−0.05) + 0.025 = −0.02; w₂ = 0.95 − 0.02.
        ("gd", {"learning_rate": 0.1, "momentum": 0.9}, (0.95, 0.93)),
        # r₁ = 0.1 + 0.25, w₁ = 1 − 0.05 / √0.35; r₂ = 0.4125, w₂ = w₁ + 0.025 / √0.4125.
        ("adagrad", {"learning_rate": 0.1}, (0.9154846, 0.9544095)),
    ],
)
def test_two_step_trajectory_hand_computed(name, hyperparameters, expected):
    trajectory = run_fixed_gradients(optim.make_optimizer(name, **hyperparameters), GRADIENTS, [1.0])

    np.testing.assert_allclose([w[0] for w in trajectory], expected, rtol=1e-6)


def test_hyperparameters_broadcast_per_row():
    # A 2 x 1 learning rate gives each row of a 2 x 3 variable its own step size.
    optimizer = optim.GradientDescent(learning_rate=[[0.1], [1.0]])
    trajectory = run_fixed_gradients(optimizer, [np.ones((2, 3))], np.zeros((2, 3)))

    np.testing.assert_allclose(trajectory[0], [[-0.1] * 3, [-1.0] * 3], rtol=1e-6)


def keras_trajectory(keras_optimizer, gradients, initial):
    variable = tf.Variable(np.asarray(initial, np.float32))
    trajectory = []
    for gradient in gradients:
        keras_optimizer.apply_gradients([(tf.constant(gradient), variable)])
        trajectory.append(variable.numpy().copy())
    return trajectory


# tf.keras is only a test oracle here; the product never uses it.
@pytest.mark.parametrize(
    "name, hyperparameters, make_oracle",
    [
        ("gd", {"learning_rate": 0.05}, lambda: tf.keras.optimizers.SGD(learning_rate=0.05)),
        ("gd", {"learning_rate": 0.05, "momentum": 0.8},
         lambda: tf.keras.optimizers.SGD(learning_rate=0.05, momentum=0.8)),
        # Keras Adagrad divides by √(r + ε) and this project by √r + ε; with ε = 0 both divide by √r,
        # which stays positive because r starts at 0.1.
        ("adagrad", {"learning_rate": 0.3, "epsilon": 0.0},
         lambda: tf.keras.optimizers.Adagrad(learning_rate=0.3, initial_accumulator_value=0.1, epsilon=0.0)),
        # Keras Adam divides the uncorrected m by √v + ε, which equals √v̂ + ε / √(1 − β2ᵗ) here; with
        # ε = 1e-10 against gradients near 1 the two placements differ far below float32 precision.
        ("adam", {"learning_rate": 0.2, "epsilon": 1e-10},
         lambda: tf.keras.optimizers.Adam(learning_rate=0.2, epsilon=1e-10)),
    ],
)
def test_rule_matches_keras_oracle(name, hyperparameters, make_oracle):
    rng = np.random.default_rng(7)
    gradients = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(6)]
    initial = rng.normal(size=(4, 3)).astype(np.float32)

    ours = run_fixed_gradients(optim.make_optimizer(name, **hyperparameters), gradients, initial, compile_step=True)
    oracle = keras_trajectory(make_oracle(), gradients, initial)

    # Float32 rounding differs with the order of operations, by up to about 3e-6 after six Adam steps.
    for step, (mine, theirs) in enumerate(zip(ours, oracle)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5, err_msg=f"step {step + 1}")


def test_registry_names_and_defaults():
    assert set(optim.OPTIMIZERS) >= {"adam", "gd", "adagrad"}
    assert optim.hyperparameter_defaults("gd") == {"learning_rate": 1e-4, "momentum": 0.0}
    assert optim.hyperparameter_defaults("adagrad") == {
        "learning_rate": 10.0, "initial_accumulator_value": 0.1, "epsilon": 1e-7,
    }


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("momentum", 1.0, "must be in [0, 1), got 1.0"),
        ("momentum", -0.5, "must be in [0, 1), got -0.5"),
        ("initial_accumulator_value", -0.1, "must be in [0, inf), got -0.1"),
        ("learning_rate", 0.0, "must be in (0, inf), got 0.0"),
        ("epsilon", "small", "must be a number, got 'small'"),
    ],
)
def test_invalid_hyperparameter_message(key, value, message):
    assert optim.check_hyperparameter(key, value) == message


@pytest.mark.parametrize(
    "key, value",
    [("momentum", 0.0), ("momentum", 0.99), ("initial_accumulator_value", 0.0), ("learning_rate", 1e-6)],
)
def test_valid_hyperparameter_accepted(key, value):
    assert optim.check_hyperparameter(key, value) is None


def test_make_optimizer_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown optimizer 'sgd'; valid optimizers: adam, gd, adagrad"):
        optim.make_optimizer("sgd")
    with pytest.raises(ValueError, match=r"optimizer gd: unknown field beta1; valid fields: learning_rate, momentum"):
        optim.make_optimizer("gd", beta1=0.9)
