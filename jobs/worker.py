"""The Ray Data actor that loads one VGG19 and stylizes task after task."""

import dataclasses
import datetime
import hashlib
import json
import logging
import time

import numpy as np
import pyarrow as pa

from jobs.manifest import Task
from jobs.outputs import CONVERGENCE_SCHEMA, RESULTS_SCHEMA, OutputError, OutputStore

logger = logging.getLogger(__name__)


def configure_tensorflow(use_gpu: bool) -> str:
    """Hide GPUs from a CPU actor, or turn on memory growth for a GPU actor; returns the device name."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not use_gpu:
        tf.config.set_visible_devices([], "GPU")
        return "CPU"
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return "GPU" if gpus else "CPU"


class StylizeActor:
    """Callable class for `Dataset.map_batches`: loads VGG19 once, then runs each task of each batch.

    Every task ends with its outputs written, including failed ones, so one
    bad image never stops the others.
    """

    def __init__(self, output: str, weights: str, seed: int, use_gpu: bool = False, precision: str = "auto"):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.device = configure_tensorflow(use_gpu)

        from stylecore.features import resolve_precision
        from stylecore.weights import load_weights

        start = time.perf_counter()
        self.weights = load_weights(weights, seed=seed)
        self.precision = resolve_precision(precision)
        self.extractors = {}  # (content layers, style layers) -> FeatureExtractor
        self.store = OutputStore(output)
        self.node_id = _node_id()
        logger.info("Actor ready on %s (node %s) with weights %s, %s VGG19 passes, in %.1f s",
                    self.device, self.node_id, self.weights.source, self.precision, time.perf_counter() - start)

    def __call__(self, batch: dict) -> dict:
        """Run each row's group of tasks (a JSON list in the `tasks` column); returns one summary row per task."""
        summaries = []
        for group_json in batch["tasks"]:
            summaries += self.run_group([Task(**fields) for fields in json.loads(str(group_json))])
        return {key: np.array([s[key] for s in summaries]) for key in summaries[0]}

    def extractor(self, settings):
        """Return the feature extractor of `settings`' layers and precision, built on first use."""
        from stylecore.features import FeatureExtractor

        key = (settings.content_layers, settings.style_layers)
        if key not in self.extractors:
            self.extractors[key] = FeatureExtractor(self.weights, *key, precision=self.precision)
        return self.extractors[key]

    def run_group(self, tasks: list[Task]) -> list[dict]:
        """Stylize tasks that share a pair, size, settings and optimizer in one batched optimization.

        Writes every task's outputs, failed ones included; returns a short summary per task for the driver.
        """
        from stylecore.images import load_image
        from stylecore.optim import make_optimizer
        from stylecore.transfer import stylize, stylize_batch

        for task in tasks:
            logger.info("Task %s started: %s + %s, %s %s", task.task_id, task.content, task.style,
                        task.optimizer, task.hyperparameters)
        start = time.perf_counter()
        first = tasks[0]
        try:
            settings = first.transfer_settings()
            content = load_image(first.content, first.image_size)
            style = load_image(first.style, first.image_size)
            optimizers = [make_optimizer(t.optimizer, **json.loads(t.hyperparameters)) for t in tasks]
            if len(tasks) == 1:
                outcomes = [stylize(self.extractor(settings), content, style, optimizers[0], settings)]
            else:
                outcomes = stylize_batch(self.extractor(settings), content, style, optimizers, settings)
        except Exception as error:  # one group's failure must not end the actor or lose other tasks
            for task in tasks:
                logger.error("Task %s failed: %s", task.task_id, error)
            outcomes = [error] * len(tasks)
        return [self._finish(task, outcome, start) for task, outcome in zip(tasks, outcomes)]

    def _finish(self, task: Task, outcome, start: float) -> dict:
        """Write one task's outputs from its StylizeResult or exception; returns the driver's summary."""
        from stylecore.images import encode_png

        row = self._base_row(task)
        png, history = None, []
        if isinstance(outcome, Exception):
            row.update(status="failed", error=f"{type(outcome).__name__}: {outcome}")
        else:
            png = encode_png(outcome.image)
            history = outcome.history
            row.update(_result_columns(outcome, png))
            row["image_uri"] = self.store.uri(f"images/{task.task_id}.png")

        row.update(wall_s=time.perf_counter() - start, finished_at=datetime.datetime.now(datetime.UTC))
        try:
            self._write(task.task_id, row, history, png)
        except OSError as error:
            # Every later task would fail the same way, so the run stops here.
            logger.error("Task %s: cannot write outputs to %s: %s", task.task_id, self.store.output, error)
            raise OutputError(f"cannot write to the output {self.store.output}: {error}") from None
        logger.info("Task %s %s: %d iterations, best loss %.4g, %.1f s", task.task_id, row["status"],
                    row.get("iterations_run") or 0, row.get("best_loss") or float("nan"), row["wall_s"])
        return {"task_id": task.task_id, "status": row["status"], "best_loss": row.get("best_loss") or float("nan"),
                "iterations_run": row.get("iterations_run") or 0, "wall_s": row["wall_s"], "error": row.get("error") or ""}

    def _base_row(self, task: Task) -> dict:
        settings = json.loads(task.settings)
        return {
            **dataclasses.asdict(task),
            "learning_rate": json.loads(task.hyperparameters).get("learning_rate"),
            **{k: settings[k] for k in ("iterations", "seed", "content_weight", "style_weight", "tv_weight")},
            "weights_source": self.weights.source,
            "precision": self.precision,
            "device": self.device,
            "node_id": self.node_id,
        }

    def _write(self, task_id: str, row: dict, history: list, png: bytes | None) -> None:
        convergence = pa.Table.from_pylist(
            [{"task_id": task_id, **{f: getattr(r, f) for f in CONVERGENCE_SCHEMA.names[1:]}} for r in history],
            CONVERGENCE_SCHEMA,
        )
        files = {f"images/{task_id}.png": png} if png is not None else {}
        results = pa.Table.from_pylist([row], RESULTS_SCHEMA)
        self.store.write_task(task_id, {"results": results, "convergence": convergence}, files)


def _result_columns(result, png: bytes) -> dict:
    best = next((r for r in result.history if r.iteration == result.best_iteration), None)
    return {
        # A time budget that ends the loop early is a success: the user asked for it.
        "status": "diverged" if result.status == "diverged" else "succeeded",
        "timed_out": result.status == "timed_out",
        "error": None,
        "best_loss": result.best_loss,
        "best_iteration": result.best_iteration,
        "best_tv_loss": best.tv_loss if best else None,
        "final_loss": result.final_loss,
        "iterations_run": result.iterations,
        "seconds_per_iteration": result.seconds_per_iteration,
        "height_px": result.image.shape[0],
        "width_px": result.image.shape[1],
        "image_png": png,
        "image_sha256": hashlib.sha256(png).hexdigest(),
    }


def _node_id() -> str:
    import ray

    # Outside Ray (tests call the actor directly) there is no node, and asking would start one.
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
