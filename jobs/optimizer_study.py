"""Compare optimizers on the linear-regression problem of `stylecore.linear`, one Ray task per trial.

    python -m jobs.optimizer_study manifests/optimizer_study.yaml

A manifest lists optimizers, each with hyperparameter values or lists of
values, and the seeds. Every combination is one trial. Lists expand as a
Cartesian product, and every value left out takes the study default of
`stylecore.linear`. Output, under the manifest's `output` folder (default
`../outputs/<manifest name>` relative to the manifest):

    results/*.parquet         one row per trial (RESULTS_SCHEMA)
    convergence/*.parquet     one row per trial per step (CONVERGENCE_SCHEMA)
    plots/loss_by_step.png    full-data loss against step, one line per trial
    plots/final_loss_by_learning_rate.png

Connects to the Ray cluster in RAY_ADDRESS, else starts a local Ray on
127.0.0.1. Trials already finished in the output folder are skipped. The
exit status is 0, or 1 when a trial failed, or 2 for an invalid manifest.
"""

import argparse
import dataclasses
import datetime
import hashlib
import io
import itertools
import json
import logging
import math
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pydantic
import ray
from matplotlib.figure import Figure

from jobs.manifest import (ManifestError, error_location, expand_grid, format_errors, read_yaml_mapping,
                           resolve_output)
from jobs.outputs import OutputStore
from jobs.ray_init import cluster_resources, init_ray
from stylecore import linear, optim

logger = logging.getLogger("jobs.optimizer_study")

# NOTE: OutputStore finds finished work by a `task_id` column in every table,
# so both tables carry `task_id`, equal to `trial_id`.
CONVERGENCE_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("task_id", pa.string()),
    ("optimizer", pa.string()),
    ("hyperparameters", pa.string()),  # JSON object, keys sorted
    ("seed", pa.int64()),
    ("step", pa.int32()),  # counts from 1; the row is the state after this step
    ("loss", pa.float64()),  # full-data MSE
    ("w1", pa.float64()),
    ("w2", pa.float64()),
    ("b", pa.float64()),
])

RESULTS_SCHEMA = pa.schema([
    ("trial_id", pa.string()),
    ("task_id", pa.string()),
    ("optimizer", pa.string()),
    ("hyperparameters", pa.string()),  # JSON object, keys sorted
    ("learning_rate", pa.float64()),
    ("batch_size", pa.int64()),  # examples per gradient; the full batch is the data set's size
    ("seed", pa.int64()),
    ("steps", pa.int32()),  # requested
    ("steps_run", pa.int32()),  # fewer than steps when the trial diverged
    ("loss_threshold", pa.float64()),
    ("final_loss", pa.float64()),
    ("best_loss", pa.float64()),
    ("steps_to_threshold", pa.int32()),  # null when the loss never reached loss_threshold
    ("w1", pa.float64()),
    ("w2", pa.float64()),
    ("b", pa.float64()),
    ("wall_s", pa.float64()),
    ("status", pa.string()),  # succeeded or diverged
    ("finished_at", pa.timestamp("ms", tz="UTC")),
])

TABLES = {"results": RESULTS_SCHEMA, "convergence": CONVERGENCE_SCHEMA}
LOSS_PLOT = "plots/loss_by_step.png"
LEARNING_RATE_PLOT = "plots/final_loss_by_learning_rate.png"
FAILED = "failed"
LOSS_PLOT_MARGIN = 10.0  # the loss axes end at this multiple of the largest loss after step 1
LOSS_PLOT_BOTTOM = 0.5  # below any full-data MSE, which the noise variance keeps near 1.0
SINGLE_PANEL_MAX_TRIALS = 12


class OptimizerSpec(pydantic.BaseModel):
    """One optimizer and its hyperparameter grid; any field besides `name` is a hyperparameter."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str


class StudyManifest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    output: str | None = None
    steps: int = pydantic.Field(linear.DEFAULT_STEPS, ge=1)
    seeds: list[int] = pydantic.Field([linear.DEFAULT_SEED], min_length=1)
    loss_threshold: float = pydantic.Field(linear.DEFAULT_LOSS_THRESHOLD, gt=0)
    optimizers: list[OptimizerSpec] = pydantic.Field(min_length=1)

    @pydantic.field_validator("seeds", mode="before")
    @classmethod
    def _single_seed_as_list(cls, value):
        return [value] if isinstance(value, int) else value


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training run: an optimizer, all of its hyperparameters, and a seed."""

    trial_id: str
    optimizer: str
    hyperparameters: dict  # every hyperparameter, batch_size included
    seed: int
    steps: int
    loss_threshold: float

    @property
    def hyperparameters_json(self) -> str:
        return json.dumps(self.hyperparameters, sort_keys=True)


def load_manifest(path: str | Path) -> tuple[StudyManifest, list[Trial]]:
    """Read, validate and expand a study manifest; raises ManifestError listing every problem."""
    path = Path(path)
    raw = read_yaml_mapping(path)

    problems = []
    try:
        manifest = StudyManifest.model_validate(raw)
        specs = list(enumerate(manifest.optimizers))
    except pydantic.ValidationError as error:
        problems += [_describe_error(e) for e in error.errors()]
        # Check the optimizers that parse, so one message lists their problems too.
        specs = _parseable_optimizers(raw.get("optimizers"))
    grids = _expand_optimizers(specs, problems)
    if problems:
        raise ManifestError(format_errors(path, problems))

    output = manifest.output or f"../outputs/{path.stem}"
    manifest = manifest.model_copy(update={"output": resolve_output(output, path.parent)})
    return manifest, make_trials(manifest, grids)


def _parseable_optimizers(raw_optimizers) -> list[tuple[int, OptimizerSpec]]:
    if not isinstance(raw_optimizers, list):
        return []
    specs = []
    for index, item in enumerate(raw_optimizers):
        try:
            specs.append((index, OptimizerSpec.model_validate(item)))
        except pydantic.ValidationError:
            continue  # StudyManifest's validation has already reported this item
    return specs


def _describe_error(error: dict) -> tuple[str, str]:
    location = error_location(error["loc"])
    if error["type"] == "extra_forbidden":
        return location, f"unknown field; valid fields: {', '.join(StudyManifest.model_fields)}"
    return location, error["msg"]


def _expand_optimizers(specs: list[tuple[int, OptimizerSpec]], problems: list) -> list[tuple[str, dict]]:
    """Return (name, hyperparameters) for every grid point; appends each invalid field to `problems`."""
    grids = []
    for index, spec in specs:
        where = f"optimizers[{index}]"
        if spec.name not in linear.STUDY_OPTIMIZERS:
            problems.append((f"{where}.name", f"unknown optimizer {spec.name!r}; "
                                              f"valid optimizers: {', '.join(linear.STUDY_OPTIMIZERS)}"))
            continue

        defaults = linear.study_defaults(spec.name)
        grids += [(spec.name, point) for point in expand_grid(spec, defaults, where, _check_value, problems)]
    return grids


def _check_value(key: str, value) -> str | None:
    if key != "batch_size":
        return optim.check_hyperparameter(key, value)
    try:
        linear.resolve_batch_size(value, linear.DEFAULT_EXAMPLES)
    except ValueError as error:
        return str(error)
    return None


def make_trials(manifest: StudyManifest, grids: list[tuple[str, dict]]) -> list[Trial]:
    """Expand the optimizer grids over the seeds; equal settings give one trial."""
    trials = {}
    for (name, hyperparameters), seed in itertools.product(grids, manifest.seeds):
        batch_size = linear.resolve_batch_size(hyperparameters["batch_size"], linear.DEFAULT_EXAMPLES)
        canonical = {key: float(value) for key, value in hyperparameters.items() if key != "batch_size"}
        canonical["batch_size"] = batch_size or linear.FULL_BATCH
        # The threshold changes no training but does change steps_to_threshold,
        # so a new threshold reruns the trials to fill that column.
        settings = {"optimizer": name, "hyperparameters": canonical, "seed": seed, "steps": manifest.steps,
                    "examples": linear.DEFAULT_EXAMPLES, "loss_threshold": manifest.loss_threshold}
        trial_id = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        trials[trial_id] = Trial(trial_id=trial_id, optimizer=name, hyperparameters=canonical, seed=seed,
                                 steps=manifest.steps, loss_threshold=manifest.loss_threshold)
    return list(trials.values())


@ray.remote(num_cpus=1)
def run_trial(output: str, trial: Trial) -> dict:
    """Train one trial and write its pieces; returns its results row, or a failed summary."""
    start = time.perf_counter()
    try:
        result = linear.train(trial.optimizer, trial.hyperparameters, steps=trial.steps, seed=trial.seed)
        pieces = _trial_tables(trial, result, time.perf_counter() - start)
        OutputStore(output, TABLES).write_task(trial.trial_id, pieces)
    except Exception as error:  # noqa: BLE001 - one bad trial must not end the others
        logger.error("Trial %s failed: %s: %s", trial.trial_id, type(error).__name__, error)
        return {"trial_id": trial.trial_id, "status": FAILED, "error": f"{type(error).__name__}: {error}"}
    return pieces["results"].to_pylist()[0]


def _trial_tables(trial: Trial, result: linear.TrainingResult, wall_s: float) -> dict[str, pa.Table]:
    steps_run = result.steps_run
    common = {"trial_id": trial.trial_id, "task_id": trial.trial_id, "optimizer": trial.optimizer,
              "hyperparameters": trial.hyperparameters_json, "seed": trial.seed}
    convergence = pa.table({
        **{key: [value] * steps_run for key, value in common.items()},
        "step": list(range(1, steps_run + 1)),
        "loss": result.losses,
        "w1": result.weights[:, 0],
        "w2": result.weights[:, 1],
        "b": result.biases,
    }, schema=CONVERGENCE_SCHEMA)

    batch_size = trial.hyperparameters["batch_size"]
    results = pa.Table.from_pylist([{
        **common,
        "learning_rate": trial.hyperparameters["learning_rate"],
        "batch_size": linear.DEFAULT_EXAMPLES if batch_size == linear.FULL_BATCH else batch_size,
        "steps": trial.steps,
        "steps_run": steps_run,
        "loss_threshold": trial.loss_threshold,
        "final_loss": result.final_loss,
        "best_loss": result.best_loss,
        "steps_to_threshold": linear.steps_to_threshold(result.losses, trial.loss_threshold),
        "w1": float(result.final_weights[0]),
        "w2": float(result.final_weights[1]),
        "b": result.final_bias,
        "wall_s": wall_s,
        "status": result.status,
        "finished_at": datetime.datetime.now(datetime.UTC),
    }], schema=RESULTS_SCHEMA)
    return {"convergence": convergence, "results": results}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.optimizer_study", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="YAML manifest of optimizers, hyperparameter grids, seeds and output folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        manifest, trials = load_manifest(args.manifest)
    except ManifestError as error:
        logger.error("%s", error)
        return 2
    return run(manifest, trials, args.manifest)


def run(manifest: StudyManifest, trials: list[Trial], manifest_path: str) -> int:
    """Run the unfinished trials, then write the plots and print the final losses; returns the exit status."""
    start = time.perf_counter()
    store = OutputStore(manifest.output, TABLES)
    store.compact()  # folds pieces that a killed earlier run left behind
    finished = store.finished_task_ids()
    pending = [t for t in trials if t.trial_id not in finished]
    logger.info("Manifest %s: %d trial(s), %d already finished, %d to run; output %s",
                manifest_path, len(trials), len(trials) - len(pending), len(pending), manifest.output)
    logger.info("Settings: %s", manifest.model_dump(exclude={"optimizers", "output"}))

    counts = _run_on_ray(manifest.output, pending) if pending else {}
    store.compact()

    results = _read_trials(store, "results", trials)
    write_plots(store, results, _read_trials(store, "convergence", trials))
    print(format_final_losses(results))
    _write_report(manifest.output)
    logger.info("Done in %.1f s: %s; output %s", time.perf_counter() - start,
                ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to run",
                manifest.output)
    return 1 if counts.get(FAILED) else 0


def _write_report(output: str) -> None:
    from jobs.report import write_report

    try:
        logger.info("Report: %s", write_report(output))
    except Exception as error:  # the tables and plots are complete; a report failure must not fail the run
        logger.error("Cannot write the report for %s: %s; rebuild it with `stylize report %s`", output, error, output)


def _run_on_ray(output: str, pending: list[Trial]) -> dict[str, int]:
    init_ray()
    logger.info("Cluster resources: %s", cluster_resources())

    running = {run_trial.remote(output, trial): trial for trial in pending}
    counts: dict[str, int] = {}
    while running:
        [ready], _ = ray.wait(list(running), num_returns=1)
        trial = running.pop(ready)
        try:
            row = ray.get(ready)
        except ray.exceptions.RayError as error:
            logger.error("Trial %s failed in Ray: %s", trial.trial_id, error)
            row = {"status": FAILED}
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] == FAILED and "error" in row:
            logger.error("Trial %s failed: %s", trial.trial_id, row["error"])
        elif row["status"] != FAILED:
            logger.info("Trial %s %s (%s %s, seed %d): %d steps, final loss %.4g, %.1f s", trial.trial_id,
                        row["status"], trial.optimizer, trial.hyperparameters_json, trial.seed, row["steps_run"],
                        row["final_loss"], row["wall_s"])
    return counts


def _read_trials(store: OutputStore, name: str, trials: list[Trial]) -> pa.Table:
    """Read a table's rows of this manifest's trials; other manifests may share the folder."""
    table = store.read_table(name)
    return table.filter(pc.is_in(table.column("trial_id"), pa.array([t.trial_id for t in trials], pa.string())))


def write_plots(store: OutputStore, results: pa.Table, convergence: pa.Table) -> None:
    """Write the loss-by-step and final-loss-by-learning-rate PNGs into `plots/`."""
    labels = {row["trial_id"]: _label(row) for row in results.to_pylist()}
    first_losses = [row["loss"] for row in convergence.to_pylist() if row["step"] == 1 and math.isfinite(row["loss"])]
    # Growing losses reach 1e30 and more, so the plots stop at ten times the
    # largest first-step loss and keep the converging trials readable.
    top = LOSS_PLOT_MARGIN * max(first_losses) if first_losses else None
    store.write_bytes(LOSS_PLOT, _png(_loss_by_step(convergence, labels, top)))
    store.write_bytes(LEARNING_RATE_PLOT, _png(_final_loss_by_learning_rate(results, top)))
    logger.info("Wrote %s and %s", store.uri(LOSS_PLOT), store.uri(LEARNING_RATE_PLOT))


def _label(row: dict) -> str:
    batch = "full" if row["batch_size"] == linear.DEFAULT_EXAMPLES else row["batch_size"]
    return f"{row['optimizer']} lr={row['learning_rate']:g} batch={batch} seed={row['seed']}"


def _loss_by_step(convergence: pa.Table, labels: dict[str, str], top: float | None) -> Figure:
    rows = convergence.sort_by([("trial_id", "ascending"), ("step", "ascending")]).to_pydict()
    lines = {}
    for trial_id, step, loss in zip(rows["trial_id"], rows["step"], rows["loss"]):
        if math.isfinite(loss):
            lines.setdefault(trial_id, ([], []))
            lines[trial_id][0].append(step)
            lines[trial_id][1].append(loss)

    # A small study shares one panel; a sweep gets one panel per optimizer.
    panels = {"": sorted(lines, key=lambda t: labels.get(t, t))}
    if len(lines) > SINGLE_PANEL_MAX_TRIALS:
        panels = {}
        for trial_id in sorted(lines, key=lambda t: labels.get(t, t)):
            panels.setdefault(labels.get(trial_id, trial_id).split()[0], []).append(trial_id)

    figure = Figure(figsize=(11, 1 + 4 * len(panels)), layout="constrained")
    for axes, (optimizer, trial_ids) in zip(figure.subplots(len(panels), 1, squeeze=False)[:, 0], panels.items()):
        for trial_id in trial_ids:
            axes.plot(*lines[trial_id], label=labels.get(trial_id, trial_id), linewidth=1.2)
        axes.axhline(1.0, color="gray", linestyle=":", linewidth=1, label="noise variance")
        axes.set_yscale("log")
        axes.set_ylim(bottom=LOSS_PLOT_BOTTOM, top=top)
        axes.set_xlabel("step (one optimizer update)")
        axes.set_ylabel("full-data MSE (squared units of y)")
        axes.set_title(f"{optimizer}: loss after each step" if optimizer else "Loss after each step")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _final_loss_by_learning_rate(results: pa.Table, top: float | None) -> Figure:
    figure = Figure(figsize=(10, 5), layout="constrained")
    axes = figure.add_subplot()
    series: dict[tuple, dict[float, list[float]]] = {}
    diverged: dict[tuple, int] = {}
    for row in results.to_pylist():
        key = (row["optimizer"], row["batch_size"])
        if math.isfinite(row["final_loss"]):
            series.setdefault(key, {}).setdefault(row["learning_rate"], []).append(row["final_loss"])
        else:
            diverged[key] = diverged.get(key, 0) + 1

    # One line per optimizer and batch size, through the mean over seeds.
    for key in sorted(set(series) | set(diverged)):
        optimizer, batch_size = key
        points = sorted(series.get(key, {}).items())
        batch = "full" if batch_size == linear.DEFAULT_EXAMPLES else batch_size
        label = f"{optimizer}, batch {batch}" + (f" ({diverged[key]} diverged)" if key in diverged else "")
        axes.plot([lr for lr, _ in points], [sum(v) / len(v) for _, v in points], marker="o", label=label)

    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_ylim(bottom=LOSS_PLOT_BOTTOM, top=top)
    axes.set_xlabel("learning rate (dimensionless)")
    axes.set_ylabel("final full-data MSE (squared units of y), mean over seeds")
    axes.set_title("Final loss by learning rate; diverged trials and losses above the top are left out")
    axes.grid(True, which="both", alpha=0.3)
    if series or diverged:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def format_final_losses(results: pa.Table) -> str:
    """Return a plain-text table of every trial's final loss, sorted by optimizer and learning rate."""
    header = f"{'optimizer':<9} {'learning_rate':>13} {'batch':>5} {'seed':>6} {'final_loss':>11} " \
             f"{'best_loss':>10} {'steps_to_threshold':>18} {'w1':>9} {'w2':>9} {'b':>9}  status"
    lines = [header]
    order = {name: index for index, name in enumerate(linear.STUDY_OPTIMIZERS)}
    rows = sorted(results.to_pylist(), key=lambda r: (order.get(r["optimizer"], 99), r["learning_rate"],
                                                       r["batch_size"], r["seed"]))
    for row in rows:
        batch = "full" if row["batch_size"] == linear.DEFAULT_EXAMPLES else str(row["batch_size"])
        threshold = "-" if row["steps_to_threshold"] is None else str(row["steps_to_threshold"])
        lines.append(f"{row['optimizer']:<9} {row['learning_rate']:>13g} {batch:>5} {row['seed']:>6} "
                     f"{row['final_loss']:>11.5g} {row['best_loss']:>10.5g} {threshold:>18} "
                     f"{row['w1']:>9.4g} {row['w2']:>9.4g} {row['b']:>9.4g}  {row['status']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
