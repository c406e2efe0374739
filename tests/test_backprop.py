"""Tests for stylecore/backprop.py: closed-form gradients against tf.GradientTape, and operation counts."""

import numpy as np
import pytest
import tensorflow as tf

from stylecore import backprop


def random_network(rng, widths: list[int]):
    """Weights and biases, float64, for layer widths [input, hidden …, output]."""
    weights = [rng.normal(size=(out, inp)) for inp, out in zip(widths[:-1], widths[1:])]
    biases = [rng.normal(size=out) for out in widths[1:]]
    return weights, biases


def tape_gradients(weights, biases, x, y):
    """Return the loss and its gradients computed by tf.GradientTape on the same network."""
    variables_w = [tf.Variable(w) for w in weights]
    variables_b = [tf.Variable(b) for b in biases]
    with tf.GradientTape() as tape:
        h = tf.constant(x)
        for index, (w, b) in enumerate(zip(variables_w, variables_b)):
            h = tf.linalg.matvec(w, h) + b
            if index < len(variables_w) - 1:
                h = tf.nn.relu(h)
        residual = h - y
        loss = tf.reduce_sum(residual * residual)
    weight_gradients, bias_gradients = tape.gradient(loss, [variables_w, variables_b])
    return float(loss), [g.numpy() for g in weight_gradients], [g.numpy() for g in bias_gradients]


@pytest.mark.parametrize("seed, widths", [(0, [3, 4, 2]), (1, [1, 1, 1]), (2, [7, 5, 3]), (3, [2, 9, 6])])
def test_two_layer_gradients_match_tape(seed, widths):
    rng = np.random.default_rng(seed)
    (w1, w2), (b1, b2) = random_network(rng, widths)
    x, y = rng.normal(size=widths[0]), rng.normal(size=widths[-1])

    gradients = backprop.two_layer_gradients(w1, b1, w2, b2, x, y)
    _, (tape_w1, tape_w2), (tape_b1, tape_b2) = tape_gradients([w1, w2], [b1, b2], x, y)

    np.testing.assert_allclose(gradients["w1"], tape_w1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gradients["b1"], tape_b1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gradients["w2"], tape_w2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gradients["b2"], tape_b2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed, widths", [
    (4, [3, 2]),  # no hidden layer
    (5, [4, 6, 3]),
    (6, [5, 8, 7, 6, 2]),
    (7, [2, 3, 3, 3, 3, 3, 1]),
])
def test_deep_gradients_match_tape(seed, widths):
    rng = np.random.default_rng(seed)
    weights, biases = random_network(rng, widths)
    x, y = rng.normal(size=widths[0]), rng.normal(size=widths[-1])

    loss, cache = backprop.forward(weights, biases, x, y)
    weight_gradients, bias_gradients = backprop.backward(weights, cache)
    tape_loss, tape_weights, tape_biases = tape_gradients(weights, biases, x, y)

    assert loss == pytest.approx(tape_loss, rel=1e-12)
    for index in range(len(weights)):
        np.testing.assert_allclose(weight_gradients[index], tape_weights[index], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bias_gradients[index], tape_biases[index], rtol=1e-10, atol=1e-12)


def test_two_layer_agrees_with_recurrence():
    rng = np.random.default_rng(8)
    weights, biases = random_network(rng, [4, 5, 3])
    x, y = rng.normal(size=4), rng.normal(size=3)

    closed_form = backprop.two_layer_gradients(weights[0], biases[0], weights[1], biases[1], x, y)
    weight_gradients, bias_gradients = backprop.backward(weights, backprop.forward(weights, biases, x, y)[1])

    np.testing.assert_allclose(closed_form["w1"], weight_gradients[0])
    np.testing.assert_allclose(closed_form["w2"], weight_gradients[1])
    np.testing.assert_allclose(closed_form["b1"], bias_gradients[0])
    np.testing.assert_allclose(closed_form["b2"], bias_gradients[1])


def expected_counts(hidden_layers: int) -> tuple[dict, dict]:
    """The forward and backward counts derived in docs/backprop.md for width 1."""
    forward = {"multiply": hidden_layers + 2, "add": hidden_layers + 2, "compare": hidden_layers}
    backward = {"multiply": 2 * hidden_layers + 2, "add": 0, "compare": hidden_layers}
    return forward, backward


def width_one_network(rng, hidden_layers: int):
    """Scalar weights and biases; the biases keep every hidden q positive, so no ReLU zeroes a gradient."""
    weights = list(rng.uniform(0.5, 1.5, size=hidden_layers + 1))
    biases = list(rng.uniform(0.5, 1.5, size=hidden_layers + 1))
    return weights, biases


@pytest.mark.parametrize("hidden_layers", [0, 1, 2, 5, 10])
def test_width_one_operation_counts(hidden_layers):
    rng = np.random.default_rng(hidden_layers)
    weights, biases = width_one_network(rng, hidden_layers)
    forward_counter, backward_counter = backprop.OperationCounter(), backprop.OperationCounter()

    _, cache = backprop.scalar_forward(weights, biases, 0.7, -0.3, forward_counter)
    backprop.scalar_backward(weights, cache, backward_counter)
    expected_forward, expected_backward = expected_counts(hidden_layers)

    for kind in ("multiply", "add", "compare"):
        assert forward_counter[kind] == expected_forward[kind], f"forward {kind}"
        assert backward_counter[kind] == expected_backward[kind], f"backward {kind}"
    assert sum(forward_counter.values()) == 3 * hidden_layers + 4
    assert sum(backward_counter.values()) == 3 * hidden_layers + 2


def test_width_one_counts_independent_of_signs():
    rng = np.random.default_rng(11)
    weights = list(rng.normal(size=6))
    biases = list(rng.normal(size=6))
    counter = backprop.OperationCounter()

    _, cache = backprop.scalar_forward(weights, biases, 0.4, 1.0, counter)
    backprop.scalar_backward(weights, cache, counter)

    assert counter["multiply"] == 3 * 5 + 4
    assert counter["add"] == 5 + 2
    assert counter["compare"] == 2 * 5


@pytest.mark.parametrize("hidden_layers", [0, 1, 4])
def test_width_one_gradients_match_arrays(hidden_layers):
    rng = np.random.default_rng(20 + hidden_layers)
    weights, biases = width_one_network(rng, hidden_layers)

    loss, cache = backprop.scalar_forward(weights, biases, 0.7, -0.3, backprop.OperationCounter())
    weight_gradients, bias_gradients = backprop.scalar_backward(weights, cache, backprop.OperationCounter())
    array_weights = [np.array([[w]]) for w in weights]
    array_loss, array_cache = backprop.forward(array_weights, [np.array([b]) for b in biases],
                                               np.array([0.7]), np.array([-0.3]))
    array_weight_gradients, array_bias_gradients = backprop.backward(array_weights, array_cache)

    assert loss == pytest.approx(array_loss)
    np.testing.assert_allclose(weight_gradients, [g.item() for g in array_weight_gradients])
    np.testing.assert_allclose(bias_gradients, [g.item() for g in array_bias_gradients])
