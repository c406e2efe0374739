"""Update rules against hand-computed trajectories and tf.keras optimizers; hyperparameter validation."""

import re

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
    assert list(optim.OPTIMIZERS) == ["adam", "gd", "adagrad", "lbfgs"]
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
    with pytest.raises(ValueError, match=r"unknown optimizer 'sgd'; valid optimizers: adam, gd, adagrad, lbfgs"):
        optim.make_optimizer("sgd")
    with pytest.raises(ValueError, match=r"optimizer gd: unknown field beta1; valid fields: learning_rate, momentum"):
        optim.make_optimizer("gd", beta1=0.9)


# f(w) = ½ Σ λᵢ (wᵢ − cᵢ)² with condition number 1000, minimum f = 0 at c.
QUADRATIC_CURVATURES = tf.constant([1.0, 10.0, 100.0, 1000.0])
QUADRATIC_MINIMUM = tf.constant([1.0, -2.0, 3.0, -4.0])


def quadratic_loss_and_gradient(point):
    with tf.GradientTape() as tape:
        tape.watch(point)
        loss = 0.5 * tf.reduce_sum(QUADRATIC_CURVATURES * tf.square(point - QUADRATIC_MINIMUM))
    return loss, tape.gradient(loss, point)


def run_lbfgs(steps, history_size=5, project=None):
    optimizer = optim.LBFGS(history_size=history_size)
    variable = tf.Variable(tf.zeros(4))
    optimizer.build(variable)
    loss, gradient = quadratic_loss_and_gradient(tf.convert_to_tensor(variable))
    losses = [float(loss)]
    for _ in range(steps):
        loss, gradient = optimizer.apply_step(quadratic_loss_and_gradient, variable, loss, gradient, project)
        losses.append(float(loss))
    return variable.numpy(), losses


def test_lbfgs_reaches_quadratic_minimum():
    point, losses = run_lbfgs(steps=20)

    np.testing.assert_allclose(point, QUADRATIC_MINIMUM.numpy(), atol=1e-2)
    assert losses[-1] < 1e-6 * losses[0]


def test_lbfgs_loss_never_increases():
    _, losses = run_lbfgs(steps=20)

    assert all(later <= earlier for earlier, later in zip(losses, losses[1:]))


def run_fixed_gradients_on_quadratic(optimizer, steps):
    variable = tf.Variable(tf.zeros(4))
    optimizer.build(variable)
    for _ in range(steps):
        _, gradient = quadratic_loss_and_gradient(tf.convert_to_tensor(variable))
        optimizer.apply_gradient(gradient, variable)
    return variable.numpy()


def test_gd_far_from_quadratic_minimum_in_same_steps():
    # The stable step 1 / λ_max barely moves the λ = 1 coordinate in 20 steps, unlike L-BFGS.
    trajectory = run_fixed_gradients_on_quadratic(optim.GradientDescent(learning_rate=1e-3), steps=20)

    assert abs(trajectory[0] - 1.0) > 0.9


def test_lbfgs_projected_step_stays_in_bounds():
    # Clipping to [-2.5, 2.5] leaves the constrained minimum at (1, -2, 2.5, -2.5).
    point, _ = run_lbfgs(steps=30, project=lambda x: tf.clip_by_value(x, -2.5, 2.5))

    assert np.all(np.abs(point) <= 2.5)
    np.testing.assert_allclose(point, [1.0, -2.0, 2.5, -2.5], atol=1e-2)


def test_lbfgs_compiled_step_matches_eager():
    optimizer = optim.LBFGS(history_size=3)
    variable = tf.Variable(tf.zeros(4))
    optimizer.build(variable)
    compiled_step = tf.function(lambda loss, gradient: optimizer.apply_step(quadratic_loss_and_gradient, variable,
                                                                            loss, gradient))
    loss, gradient = quadratic_loss_and_gradient(tf.convert_to_tensor(variable))
    for _ in range(8):
        loss, gradient = compiled_step(loss, gradient)

    eager_point, _ = run_lbfgs(steps=8, history_size=3)
    np.testing.assert_allclose(variable.numpy(), eager_point, rtol=1e-6)


def test_lbfgs_direction_matches_dense_bfgs():
    # The two-loop recursion must equal −H·g for H built by the dense BFGS update from the newest pairs.
    rng = np.random.default_rng(3)
    hessian = rng.normal(size=(4, 4))
    hessian = hessian @ hessian.T + 4 * np.eye(4)
    optimizer = optim.LBFGS(history_size=3)
    optimizer.build(tf.Variable(tf.zeros(4)))
    pairs = []
    for _ in range(5):
        s = rng.normal(size=4).astype(np.float32)
        y = (hessian @ s).astype(np.float32)
        optimizer._remember(tf.constant(True), tf.constant(s), tf.constant(y))
        pairs.append((s.astype(np.float64), y.astype(np.float64)))
    gradient = rng.normal(size=4).astype(np.float32)

    s, y = pairs[-1]
    inverse = (s @ y) / (y @ y) * np.eye(4)
    for s, y in pairs[-3:]:
        rho = 1.0 / (s @ y)
        v = np.eye(4) - rho * np.outer(y, s)
        inverse = v.T @ inverse @ v + rho * np.outer(s, s)
    direction = optimizer._direction(tf.constant(gradient)).numpy()

    np.testing.assert_allclose(direction, -inverse @ gradient, rtol=1e-4, atol=1e-6)


def test_lbfgs_rejects_apply_gradient():
    optimizer = optim.LBFGS()
    variable = tf.Variable(tf.zeros(2))
    optimizer.build(variable)

    assert optimizer.needs_loss_function
    with pytest.raises(TypeError, match="call apply_step"):
        optimizer.apply_gradient(tf.ones(2), variable)


@pytest.mark.parametrize(
    "value, message",
    [(0, "must be in [1, inf), got 0"), (2.5, "must be a whole number, got 2.5"), ("ten", "must be a number, got 'ten'")],
)
def test_invalid_history_size_message(value, message):
    assert optim.check_hyperparameter("history_size", value) == message
    with pytest.raises(ValueError, match=re.escape(f"history_size {message}")):
        optim.LBFGS(history_size=value)


def test_lbfgs_accepts_whole_float_history_size():
    assert optim.make_optimizer("lbfgs", history_size=5.0).history_size == 5
    assert optim.hyperparameter_defaults("lbfgs") == {"history_size": 10}
