"""Closed-form backpropagation for ReLU networks with a squared loss, in NumPy.

The network has L hidden layers:

    h⁽⁰⁾ = x,  q⁽ˡ⁾ = W⁽ˡ⁾h⁽ˡ⁻¹⁾ + b⁽ˡ⁾,  h⁽ˡ⁾ = ReLU(q⁽ˡ⁾)  for l = 1 … L,
    p = W⁽ᴸ⁺¹⁾h⁽ᴸ⁾ + b⁽ᴸ⁺¹⁾,  loss = (p − y)ᵀ(p − y).

`two_layer_gradients` writes out the case L = 1 term by term, and `forward`
with `backward` run the recurrences for any L. `scalar_forward` and
`scalar_backward` repeat them for width 1 on Python floats and count every
arithmetic operation. docs/backprop.md derives all of them.

Vectors are 1-D arrays and W⁽ˡ⁾ is (width of layer l) × (width of layer l−1).
Each gradient has the shape of its variable.
"""

import collections
import dataclasses

import numpy as np


def two_layer_gradients(w1, b1, w2, b2, x, y) -> dict[str, np.ndarray]:
    """Return ∂loss/∂W⁽¹⁾, ∂loss/∂b⁽¹⁾, ∂loss/∂W⁽²⁾ and ∂loss/∂b⁽²⁾ for one hidden layer, by key w1, b1, w2, b2."""
    q = w1 @ x + b1
    h = np.maximum(q, 0.0)
    p = w2 @ h + b2

    d_p = 2.0 * (p - y)  # ∂L/∂p
    d_w2 = np.outer(d_p, h)  # ∂L/∂W⁽²⁾_ij = ∂L/∂p_i · h_j
    d_b2 = d_p
    d_h = w2.T @ d_p  # ∂L/∂h = (∂p/∂h)ᵀ ∂L/∂p with ∂p/∂h = W⁽²⁾
    d_q = d_h * (q > 0)  # ∂h/∂q is diagonal: δ_ij · 1[q_i > 0]
    d_w1 = np.outer(d_q, x)
    d_b1 = d_q
    return {"w1": d_w1, "b1": d_b1, "w2": d_w2, "b2": d_b2}


@dataclasses.dataclass(frozen=True)
class ForwardCache:
    """The forward pass's values that the backward pass reads."""

    inputs: list[np.ndarray]  # h⁽⁰⁾ … h⁽ᴸ⁾, the input of each affine layer
    pre_activations: list[np.ndarray]  # q⁽¹⁾ … q⁽ᴸ⁾
    residual: np.ndarray  # p − y


def forward(weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, y: np.ndarray):
    """Run the network; returns the loss and the cache for `backward`. The last layer has no ReLU."""
    inputs, pre_activations = [x], []
    h = x
    for w, b in zip(weights[:-1], biases[:-1]):
        q = w @ h + b
        h = np.maximum(q, 0.0)
        pre_activations.append(q)
        inputs.append(h)

    residual = weights[-1] @ h + biases[-1] - y
    return float(residual @ residual), ForwardCache(inputs, pre_activations, residual)


def backward(weights: list[np.ndarray], cache: ForwardCache) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return the gradients of the loss with respect to every weight matrix and bias vector."""
    layers = len(weights)
    weight_gradients, bias_gradients = [None] * layers, [None] * layers

    delta = 2.0 * cache.residual  # ∂L/∂p, the δ of the output layer
    for index in reversed(range(layers)):
        weight_gradients[index] = np.outer(delta, cache.inputs[index])
        bias_gradients[index] = delta
        if index > 0:
            # ∂L/∂h of the layer below, then through its ReLU to ∂L/∂q.
            delta = (weights[index].T @ delta) * (cache.pre_activations[index - 1] > 0)
    return weight_gradients, bias_gradients


class OperationCounter(collections.Counter):
    """Counts of scalar operations by kind: "multiply", "add" (subtraction included) and "compare"."""

    def multiply(self, a: float, b: float) -> float:
        self["multiply"] += 1
        return a * b

    def add(self, a: float, b: float) -> float:
        self["add"] += 1
        return a + b

    def subtract(self, a: float, b: float) -> float:
        self["add"] += 1
        return a - b

    def relu(self, q: float) -> float:
        self["compare"] += 1
        return q if q > 0.0 else 0.0

    def relu_gradient(self, upstream: float, q: float) -> float:
        """Pass `upstream` where q > 0, else 0: a selection by one comparison, no arithmetic."""
        self["compare"] += 1
        return upstream if q > 0.0 else 0.0


def scalar_forward(weights: list[float], biases: list[float], x: float, y: float, counter: OperationCounter):
    """Run a network of width 1 on floats, counting operations; returns the loss and the cache."""
    inputs, pre_activations = [x], []
    h = x
    for w, b in zip(weights[:-1], biases[:-1]):
        q = counter.add(counter.multiply(w, h), b)
        h = counter.relu(q)
        pre_activations.append(q)
        inputs.append(h)

    p = counter.add(counter.multiply(weights[-1], h), biases[-1])
    residual = counter.subtract(p, y)
    return counter.multiply(residual, residual), ForwardCache(inputs, pre_activations, residual)


def scalar_backward(weights: list[float], cache: ForwardCache, counter: OperationCounter):
    """Return the weight and bias gradients of a width-1 network, counting operations.

    A bias gradient is the layer's δ itself, so it costs no operation, and
    the gradient with respect to the input x is never formed.
    """
    layers = len(weights)
    weight_gradients, bias_gradients = [0.0] * layers, [0.0] * layers

    delta = counter.multiply(2.0, cache.residual)
    for index in reversed(range(layers)):
        weight_gradients[index] = counter.multiply(delta, cache.inputs[index])
        bias_gradients[index] = delta
        if index > 0:
            upstream = counter.multiply(weights[index], delta)
            delta = counter.relu_gradient(upstream, cache.pre_activations[index - 1])
    return weight_gradients, bias_gradients
