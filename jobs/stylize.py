"""Stylize every content/style pair of a manifest with every optimizer configuration, on Ray.

    python -m jobs.stylize manifests/demo.yaml

Connects to the Ray cluster in RAY_ADDRESS (as `ray job submit` sets it),
else starts a local Ray on 127.0.0.1. Tasks already finished in the output
folder are skipped, so a rerun after a crash, or after new images were
added, does only the remaining work.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import math
import platform
import sys
import time
import uuid
from importlib import metadata as importlib_metadata

import ray
import yaml

from jobs.manifest import ManifestError, Task, load_manifest
from jobs.outputs import OutputStore
from jobs.ray_init import cluster_resources, init_ray
from jobs.worker import StylizeActor

logger = logging.getLogger("jobs.stylize")

# Ray Data needs a CPU for its own work beside the actors. Without one, the
# pipeline waits forever on a machine whose CPUs all belong to actors.
RESERVED_CPUS = 1
PROGRESS_INTERVAL_S = 30.0
# Batched tasks cost about 1.8 KB of actor memory per pixel on CPU. In the
# grid benchmark, 8 images of 256 px took 1.8 GiB against 1.0 GiB for one.
# 2**21 pixels is 8 images of 512 px, or 2 of 1024 px.
MAX_BATCH_PIXELS = 2**21
DEFAULT_MAX_BATCH = 8
BATCHED_OPTIMIZERS = ("adam", "gd", "adagrad")
EXIT_TASK_FAILED = 1
EXIT_BAD_MANIFEST = 2
EXIT_RUN_STOPPED = 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.stylize", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="YAML manifest of pairs, optimizer grids and the output folder")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs each actor reserves (default 1)")
    parser.add_argument("--gpus-per-actor", type=float, default=None,
                        help="GPUs each actor reserves (default 1 when the cluster has GPUs, else 0)")
    parser.add_argument("--max-actors", type=int, default=None,
                        help="upper bound on actors (default: as many as the cluster's resources allow)")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help="most tasks of one pair optimized together in one batch; 1 turns batching off "
                             f"(default {DEFAULT_MAX_BATCH})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        manifest, tasks = load_manifest(args.manifest)
    except ManifestError as error:
        logger.error("%s", error)
        return EXIT_BAD_MANIFEST
    return run(manifest, tasks, args)


def run(manifest, tasks: list[Task], args) -> int:
    """Run the pending tasks of a validated manifest; returns the process exit status."""
    try:
        return _run(manifest, tasks, args)
    except (OSError, ray.exceptions.RayError) as error:
        logger.error("Run stopped: %s. Tasks that finished before this are kept; fix the cause and rerun "
                     "the same manifest to do the rest.", _root_message(error))
        return EXIT_RUN_STOPPED


def _root_message(error: Exception) -> str:
    """Return the innermost error's message, since Ray wraps a worker's exception in its own with a traceback."""
    cause = getattr(error, "cause", None) or error.__cause__
    if isinstance(cause, Exception) and cause is not error:
        return _root_message(cause)
    return str(error).strip().splitlines()[-1]


def _run(manifest, tasks: list[Task], args) -> int:
    start = time.perf_counter()
    store = OutputStore(manifest.output)
    store.compact()  # folds pieces a killed earlier run left behind
    finished = store.finished_task_ids()
    pending = [t for t in tasks if t.task_id not in finished]
    logger.info("Manifest %s: %d task(s), %d already finished, %d to run; output %s",
                args.manifest, len(tasks), len(tasks) - len(pending), len(pending), manifest.output)
    logger.info("Settings: %s", manifest.model_dump(exclude={"pairs", "optimizers", "output"}))

    record = RunRecord(args.manifest, manifest, tasks, skipped=len(tasks) - len(pending))
    record.write(store)
    if pending:
        init_ray()
        record.cluster_resources = cluster_resources()
        record.counts = _run_on_ray(manifest, pending, args, record.cluster_resources)
    store.compact()
    record.finish(store)
    _write_report(manifest.output)

    # The exit status covers every task of the manifest, so a rerun of a run
    # with failed tasks still reports them instead of exiting 0.
    manifest_counts = _status_counts(store, {t.task_id for t in tasks})
    logger.info("Done in %.1f s: this run %s; all %d task(s) of the manifest: %s; output %s",
                time.perf_counter() - start, _format_counts(record.counts) or "ran nothing", len(tasks),
                _format_counts(manifest_counts), manifest.output)
    if manifest_counts.get("failed"):
        logger.warning("%d task(s) failed; their results rows hold the errors. A failed task is not retried while "
                       "its images and settings are unchanged: fix what its error names and rerun.", manifest_counts["failed"])
        return EXIT_TASK_FAILED
    return 0


def _status_counts(store: OutputStore, task_ids: set[str]) -> dict[str, int]:
    table = store.read_table("results", columns=["task_id", "status"])
    counts: dict[str, int] = {}
    for task_id, status in zip(table.column("task_id").to_pylist(), table.column("status").to_pylist()):
        if task_id in task_ids:
            counts[status] = counts.get(status, 0) + 1
    return counts


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _write_report(output: str) -> None:
    from jobs.report import write_report

    try:
        logger.info("Report: %s", write_report(output))
    except Exception as error:  # the outputs are complete; a report failure must not fail the run
        logger.error("Cannot write the report for %s: %s; rebuild it with `stylize report %s`", output, error, output)


class RunRecord:
    """`run.json` in the output folder: versions, cluster resources, counts, start and end times.

    Written at the start of a run (without `finished_at`) and again at its
    end; `runs/<run_id>.json` keeps every run's record. The resolved
    manifest goes beside it as `manifest.resolved.yaml`.
    """

    def __init__(self, manifest_path, manifest, tasks, skipped: int):
        self.run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
        self.manifest_path = str(manifest_path)
        self.manifest = manifest
        self.task_ids = sorted(t.task_id for t in tasks)
        self.skipped = skipped
        self.started_at = _now()
        self.finished_at = None
        self.cluster_resources = {}
        self.counts = {}

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "manifest": self.manifest_path,
            "output": self.manifest.output,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "tasks": len(self.task_ids),
            "task_ids": self.task_ids,
            "skipped_as_finished": self.skipped,
            "counts": self.counts,
            "weights": self.manifest.weights,
            "cluster_resources": self.cluster_resources,
            "versions": _versions(),
        }

    def write(self, store: OutputStore) -> None:
        text = json.dumps(self.as_dict(), indent=2, sort_keys=True).encode()
        store.write_bytes("run.json", text)
        store.write_bytes(f"runs/{self.run_id}.json", text)
        resolved = yaml.safe_dump(self.manifest.model_dump(mode="json"), sort_keys=False)
        store.write_bytes("manifest.resolved.yaml", resolved.encode())

    def finish(self, store: OutputStore) -> None:
        self.finished_at = _now()
        self.write(store)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in ("stylecore", "tensorflow-cpu", "tensorflow", "keras", "ray", "pyarrow", "numpy", "pillow"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions




def _run_on_ray(manifest, pending: list[Task], args, resources: dict) -> dict:
    logger.info("Cluster resources: %s", resources)

    gpus = args.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) else 0.0
    groups = group_tasks(pending, args.max_batch)
    actors = _actor_count(resources, args.cpus_per_actor, gpus, len(groups), args.max_actors)
    logger.info("Starting %d actor(s) with %g CPU and %g GPU each", actors, args.cpus_per_actor, gpus)

    logger.info("%d task(s) in %d actor call(s) of up to %d batched images", len(pending), len(groups), args.max_batch)
    items = [{"tasks": json.dumps([dataclasses.asdict(t) for t in group])} for group in groups]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    results = dataset.map_batches(
        StylizeActor,
        fn_constructor_kwargs={"output": manifest.output, "weights": manifest.weights,
                               "seed": manifest.seed, "use_gpu": gpus > 0, "precision": manifest.precision},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=args.cpus_per_actor,
        num_gpus=gpus,
        # Ray Data restarts a killed actor process and retries its unfinished
        # call by default (max_restarts and max_task_retries -1 in Ray 2.60).
        # NOTE: an actor that dies on every attempt, say out of memory, is retried without end.
    )

    counts: dict[str, int] = {}
    done, last_report, start = 0, time.perf_counter(), time.perf_counter()
    for row in results.iter_rows():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        done += 1
        level = logging.WARNING if row["status"] == "failed" else logging.INFO
        logger.log(level, "Task %s %s: %d iterations, best loss %.4g, %.1f s%s", row["task_id"], row["status"],
                   row["iterations_run"], row["best_loss"], row["wall_s"], f" ({row['error']})" if row["error"] else "")
        now = time.perf_counter()
        if now - last_report >= PROGRESS_INTERVAL_S or done == len(pending):
            rate = done / (now - start)
            logger.info("Progress: %d/%d tasks, %.2f tasks/min, ETA %.0f s",
                        done, len(pending), rate * 60, (len(pending) - done) / rate if rate else math.inf)
            last_report = now
    return counts


def group_tasks(tasks: list[Task], max_batch: int) -> list[list[Task]]:
    """Group tasks that differ only in their hyperparameters, for one batched optimization per group.

    Batches hold at most `max_batch` images and at most MAX_BATCH_PIXELS
    pixels (counting each image as image_size²), which bounds an actor's
    memory. L-BFGS steps each image on its own, so its tasks run alone.
    """
    groups: dict[tuple, list[Task]] = {}
    for task in tasks:
        batchable = task.optimizer in BATCHED_OPTIMIZERS
        key = (task.content_sha256, task.style_sha256, task.image_size, task.settings, task.optimizer,
               task.weights) if batchable else (task.task_id,)
        groups.setdefault(key, []).append(task)

    batches = []
    for group in groups.values():
        size = max(1, min(max_batch, MAX_BATCH_PIXELS // group[0].image_size ** 2))
        batches += [group[i:i + size] for i in range(0, len(group), size)]
    return batches


def _actor_count(resources: dict, cpus_per_actor: float, gpus_per_actor: float, tasks: int, max_actors) -> int:
    by_cpu = int((resources.get("CPU", 1) - RESERVED_CPUS) // cpus_per_actor) if cpus_per_actor else tasks
    by_gpu = int(resources.get("GPU", 0) // gpus_per_actor) if gpus_per_actor else tasks
    count = max(1, min(by_cpu, by_gpu, tasks))
    return min(count, max_actors) if max_actors else count


if __name__ == "__main__":
    sys.exit(main())
