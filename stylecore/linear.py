"""Linear regression on synthetic data: the problem of the optimizer study.

The data follow y = 4·x₁ + 3·x₂ + 2 + noise, with x and the noise standard
normal. The model ŷ = X·wᵀ + b starts at w = [[5, 5]], b = 10 and is fit to
the mean squared error (MSE) with the hand-written optimizers of
`stylecore.optim`. Because the noise has variance 1, no model brings the
full-data MSE much below 1.0.

Every default of the study lives here. The study's learning rates differ
from the style-transfer defaults in `stylecore.optim` because this problem's
parameters are of order 1, not pixel values of order 100.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from stylecore import optim

DEFAULT_SEED = 10605
DEFAULT_EXAMPLES = 2000
DEFAULT_STEPS = 300
TRUE_WEIGHTS = (4.0, 3.0)
TRUE_BIAS = 2.0
INITIAL_WEIGHTS = (5.0, 5.0)
INITIAL_BIAS = 10.0
# Full-data MSE that counts as converged: 10 % above the noise variance of 1.0.
DEFAULT_LOSS_THRESHOLD = 1.1
# The batch_size value that selects every example, i.e. the full-batch gradient.
FULL_BATCH = "full"

SUCCEEDED = "succeeded"
DIVERGED = "diverged"


@dataclasses.dataclass(frozen=True)
class StudyOptimizer:
    """One optimizer of the study: the `stylecore.optim` rule it runs and its study defaults."""

    rule: str  # name in stylecore.optim.OPTIMIZERS
    batch_size: int | str  # examples per gradient, or FULL_BATCH
    hyperparameters: dict  # study defaults that replace the rule's own defaults


# "sgd" is the gradient-descent rule fed the gradient of one random example.
STUDY_OPTIMIZERS = {
    "gd": StudyOptimizer("gd", FULL_BATCH, {"learning_rate": 0.01}),
    "sgd": StudyOptimizer("gd", 1, {"learning_rate": 0.01}),
    "adagrad": StudyOptimizer("adagrad", 1, {"learning_rate": 0.1, "initial_accumulator_value": 0.1,
                                             "epsilon": 1e-7}),
    "adam": StudyOptimizer("adam", 1, {"learning_rate": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}),
}


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """The trajectory of one training run, where row i is the state after step i + 1.

    A diverged run stops at the first non-finite loss, so it has fewer rows
    than the requested steps, and its last loss is inf or NaN.

    NOTE: a loss that grows but stays finite for all the steps still counts
    as SUCCEEDED, for example gd with learning rate 1 and 300 steps.
    """

    losses: np.ndarray  # [steps_run], full-data MSE after each step
    weights: np.ndarray  # [steps_run, 2], w₁ and w₂ after each step
    biases: np.ndarray  # [steps_run], b after each step
    status: str  # SUCCEEDED or DIVERGED

    @property
    def steps_run(self) -> int:
        return len(self.losses)

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    @property
    def best_loss(self) -> float:
        finite = self.losses[np.isfinite(self.losses)]
        return float(finite.min()) if finite.size else math.nan

    @property
    def final_weights(self) -> np.ndarray:
        return self.weights[-1]

    @property
    def final_bias(self) -> float:
        return float(self.biases[-1])


def study_defaults(name: str) -> dict:
    """Return the study's hyperparameters of optimizer `name`, batch_size included.

    The rule's own defaults in `stylecore.optim` fill every hyperparameter
    the study does not set, for example the momentum of "gd".
    """
    if name not in STUDY_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(STUDY_OPTIMIZERS)}")
    spec = STUDY_OPTIMIZERS[name]
    return {**optim.hyperparameter_defaults(spec.rule), **spec.hyperparameters, "batch_size": spec.batch_size}


def make_dataset(seed: int = DEFAULT_SEED, examples: int = DEFAULT_EXAMPLES) -> tuple[tf.Tensor, tf.Tensor]:
    """Draw the data set and return features (examples × 2) and targets (examples × 1), float32.

    Sets TensorFlow's global seed, then draws the features before the noise,
    so one seed always gives the same data.
    """
    tf.random.set_seed(seed)
    features = tf.random.normal([examples, 2])
    noise = tf.random.normal([examples, 1])
    targets = features @ tf.constant([TRUE_WEIGHTS], tf.float32, shape=[2, 1]) + TRUE_BIAS + noise
    return features, targets


def predict(features: tf.Tensor, weights: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """Return ŷ = X·wᵀ + b (n × 1) for features n × 2, weights 1 × 2 and a scalar bias."""
    return tf.matmul(features, weights, transpose_b=True) + bias


def mean_squared_error(predictions: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(predictions - targets))


def gradients(features: tf.Tensor, targets: tf.Tensor, weights: tf.Variable, bias: tf.Variable):
    """Return the gradients of the batch's MSE with respect to weights (1 × 2) and bias (scalar)."""
    with tf.GradientTape() as tape:
        loss = mean_squared_error(predict(features, weights, bias), targets)
    return tape.gradient(loss, [weights, bias])


def resolve_batch_size(batch_size: int | str, examples: int) -> int | None:
    """Return the examples per gradient, or None for the full batch. Raises ValueError if invalid."""
    if batch_size == FULL_BATCH:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= examples:
        raise ValueError(f"batch_size must be {FULL_BATCH!r} or an integer in [1, {examples}], got {batch_size!r}")
    return None if batch_size == examples else batch_size


def sample_batches(seed: int, steps: int, batch_size: int, examples: int) -> tf.Tensor:
    """Draw the example indices of every step: steps × batch_size, int32, in [0, examples).

    Each index is drawn uniformly and independently, so a batch larger than
    one may repeat an example. The generator is separate from the global
    seed, so drawing batches leaves `make_dataset` unaffected.
    """
    generator = tf.random.Generator.from_seed(seed)
    return generator.uniform([steps, batch_size], minval=0, maxval=examples, dtype=tf.int32)


def train(optimizer: str = "gd", hyperparameters: dict | None = None, steps: int = DEFAULT_STEPS,
          seed: int = DEFAULT_SEED, examples: int = DEFAULT_EXAMPLES) -> TrainingResult:
    """Fit the model with one optimizer of STUDY_OPTIMIZERS and return its trajectory.

    Args:
        optimizer: a key of STUDY_OPTIMIZERS.
        hyperparameters: values replacing `study_defaults(optimizer)`,
            batch_size included.
        steps: updates to run, unless the loss turns non-finite first.
        seed: draws both the data set and the batches.
        examples: size of the data set.
    """
    settings = {**study_defaults(optimizer), **(hyperparameters or {})}
    batch_size = resolve_batch_size(settings.pop("batch_size"), examples)
    features, targets = make_dataset(seed, examples)
    batches = sample_batches(seed, steps, batch_size, examples) if batch_size else None

    weights = tf.Variable([INITIAL_WEIGHTS], dtype=tf.float32, name="weights")
    bias = tf.Variable(INITIAL_BIAS, dtype=tf.float32, name="bias")
    # Each optimizer instance keeps the state of one variable.
    rule = STUDY_OPTIMIZERS[optimizer].rule
    weight_optimizer = optim.make_optimizer(rule, **settings)
    bias_optimizer = optim.make_optimizer(rule, **settings)
    weight_optimizer.build(weights)
    bias_optimizer.build(bias)

    # AutoGraph is off because the step has no tensor-dependent control flow,
    # and AutoGraph re-reads source files, which fails if they changed on disk.
    @tf.function(autograph=False)
    def step(indices):
        batch_features, batch_targets = features, targets
        if indices is not None:
            batch_features, batch_targets = tf.gather(features, indices), tf.gather(targets, indices)
        weight_gradient, bias_gradient = gradients(batch_features, batch_targets, weights, bias)
        weight_optimizer.apply_gradient(weight_gradient, weights)
        bias_optimizer.apply_gradient(bias_gradient, bias)
        return mean_squared_error(predict(features, weights, bias), targets)

    return _run_steps(step, batches, steps, weights, bias)


def _run_steps(step, batches, steps: int, weights: tf.Variable, bias: tf.Variable) -> TrainingResult:
    losses, weight_rows, biases = [], [], []
    status = SUCCEEDED
    for index in range(steps):
        loss = float(step(None if batches is None else batches[index]))
        losses.append(loss)
        weight_rows.append(weights.numpy()[0])
        biases.append(float(bias.numpy()))
        if not math.isfinite(loss):
            status = DIVERGED
            break
    return TrainingResult(losses=np.array(losses), weights=np.array(weight_rows).reshape(-1, 2),
                          biases=np.array(biases), status=status)


def steps_to_threshold(losses: np.ndarray, threshold: float) -> int | None:
    """Return the first step (counting from 1) whose loss is at most `threshold`, or None if none is."""
    reached = np.flatnonzero(np.asarray(losses) <= threshold)
    return int(reached[0]) + 1 if reached.size else None
