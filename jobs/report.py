"""Write an HTML report of a run's output folder: header, contact sheet, convergence plots and grid tables.

    python -m jobs.report OUTPUT
    stylize report OUTPUT

Reads only the Parquet tables (compacted parts and `_pending` pieces, so a
run still in progress renders too) and `run.json` when present. Works for a
style-transfer run (results with `content` and `style`) and for an
optimizer study (results with `trial_id`). Writes, under OUTPUT:

    report.html                    opens offline; links only to the files below
    report/plots/*.png             matplotlib figures
    report/thumbnails/*.jpg        content, style and result thumbnails

The HTML sets `data-image-count` and `data-broken-image-count` on <body>
once the page has loaded, so a headless browser can check that every image
decoded.
"""

import argparse
import datetime
import hashlib
import html
import io
import json
import logging
import math
import statistics
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from jobs.outputs import PENDING, OutputStore

logger = logging.getLogger("jobs.report")

REPORT_FILE = "report.html"
RUN_INFO_FILE = "run.json"
PLOTS_FOLDER = "report/plots"
THUMBNAILS_FOLDER = "report/thumbnails"
PLACEHOLDER_FILE = f"{THUMBNAILS_FOLDER}/unreadable.png"

THUMBNAIL_SIZE_PX = 128  # longer side
THUMBNAIL_JPEG_QUALITY = 80
# 200 cards of three thumbnails each keep the page to about 600 small images
# whatever the number of tasks. Measured on a synthetic run of 1,000 tasks at
# 32 px: 641 images, and headless chromium 156 loads the page in about 1.5 s.
MAX_CARDS = 200
MAX_TABLE_ROWS = 200
MAX_CONVERGENCE_PLOTS = 40  # one per content/style pair
MAX_PLOT_LINES = 24
CHECKPOINT_ITERATIONS = (10, 50, 100, 500, 1000, 5000)
PLOT_DPI = 100

STYLE_TRANSFER = "style transfer"
OPTIMIZER_STUDY = "optimizer study"
# Losses of different pairs differ by orders of magnitude, so the grid compares ratios.
RELATIVE_LOSS_NOTE = ("Each loss is divided by the lowest loss that any configuration reached on the same "
                      "content/style pair at the same point, and the ratios are averaged over pairs with a "
                      "geometric mean, so 1 is the best configuration and 2 means twice its loss.")
# Settings that, with the hyperparameters, tell two configurations of a run apart.
STYLE_TRANSFER_SETTINGS = ("image_size", "iterations", "seed", "content_weight", "style_weight", "tv_weight")


def write_report(output: str) -> str:
    """Write `report.html`, its plots and thumbnails into a run's output folder; returns the report's location.

    Args:
        output: the run's output folder: a local path or a `file://`, `s3://` or `gs://` URI.

    Raises:
        FileNotFoundError: the folder contains no results table yet.
    """
    kind, store = _open_store(output)
    results = store.read_table("results", include_pending=True)
    convergence = store.read_table("convergence", include_pending=True)
    run_info = _read_run_info(store)
    pending = len(store.list_files(f"results/{PENDING}"))
    logger.info("Reporting on %s: %s run, %d results row(s), %d pending piece(s)",
                output, kind, results.num_rows, pending)

    header = _header_html(output, kind, results, run_info, pending)
    if kind == STYLE_TRANSFER:
        body = _style_transfer_html(store, results, convergence)
    else:
        body = _optimizer_study_html(store, results, convergence)

    store.write_bytes(REPORT_FILE, _page_html(f"Run report: {_run_id(output, run_info)}", header + body).encode())
    location = store.uri(REPORT_FILE)
    logger.info("Wrote %s", location)
    return location


def _open_store(output: str) -> tuple[str, OutputStore]:
    """Detect the kind of run from the results table's columns and open its store with the matching schemas."""
    probe = OutputStore(output)
    paths = probe.list_files("results") + probe.list_files(f"results/{PENDING}")
    if not paths:
        raise FileNotFoundError(f"{output}: no results Parquet files under results/ or results/{PENDING}/. "
                                "Pass the output folder of a run that has finished at least one task.")

    columns = set(pq.read_schema(paths[0], filesystem=probe.fs).names)
    if "trial_id" in columns:
        # Imported here because the study module loads Ray and TensorFlow.
        from jobs import optimizer_study

        return OPTIMIZER_STUDY, OutputStore(output, optimizer_study.TABLES)
    if {"content", "style"} <= columns:
        return STYLE_TRANSFER, probe
    raise ValueError(f"{paths[0]}: unknown results table; expected `content` and `style` columns "
                     f"(style transfer) or `trial_id` (optimizer study), found {', '.join(sorted(columns))}")


def _read_run_info(store: OutputStore) -> dict:
    path = f"{store.root}/{RUN_INFO_FILE}"
    try:
        with store.fs.open_input_stream(path) as stream:
            info = json.loads(stream.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("Ignoring %s: cannot read it as JSON (%s)", store.uri(RUN_INFO_FILE), error)
        return {}
    if not isinstance(info, dict):
        logger.warning("Ignoring %s: expected a JSON object, got %s", store.uri(RUN_INFO_FILE), type(info).__name__)
        return {}
    return info


def _run_id(output: str, run_info: dict) -> str:
    return str(run_info.get("run_id") or output.rstrip("/").rsplit("/", 1)[-1])


# --- Header -----------------------------------------------------------------


def _header_html(output: str, kind: str, results: pa.Table, run_info: dict, pending: int) -> str:
    """Return the run's summary table, preferring `run.json` and falling back to the results table's columns."""
    rows = results.to_pydict()
    counts = run_info.get("counts") or _count(rows["status"])
    finished_at = [t for t in rows["finished_at"] if t is not None]
    started = [t.timestamp() - (w or 0) for t, w in zip(rows["finished_at"], rows["wall_s"]) if t is not None]

    fields = [
        ("run id", _run_id(output, run_info)),
        ("kind", kind),
        ("output", output),
        ("manifest", run_info.get("manifest", "not recorded (no run.json)")),
        ("started at", run_info.get("started_at") or _estimate(min(started, default=None), "first task start")),
        ("finished at", run_info.get("finished_at") or _finished_fallback(finished_at, pending)),
        ("tasks by status", ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"),
        ("pending pieces", f"{pending} task(s) not yet compacted" if pending else "none"),
    ]
    if kind == STYLE_TRANSFER:
        fields += [("weights source", "; ".join(sorted({w for w in rows["weights_source"] if w})) or "not recorded"),
                   ("devices", ", ".join(sorted({d for d in rows["device"] if d})) or "not recorded"),
                   ("nodes", str(len({n for n in rows["node_id"] if n}) or "not recorded"))]
    fields += [("cluster resources", _format_mapping(run_info.get("cluster_resources"))),
               ("versions", _format_mapping(run_info.get("versions")))]

    cells = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
                    for name, value in fields)
    return f"<h1>Run report: {html.escape(_run_id(output, run_info))}</h1>\n<table class='header'>{cells}</table>\n"


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _estimate(timestamp: float | None, description: str) -> str:
    if timestamp is None:
        return "not recorded"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
    return f"{moment} (estimated: {description}, no run.json)"


def _finished_fallback(finished_at: list, pending: int) -> str:
    if not finished_at:
        return "not recorded"
    last = max(finished_at).isoformat(timespec="seconds")
    return f"{last} (last task finished; no run.json{', run may be in progress' if pending else ''})"


def _format_mapping(value) -> str:
    if not value:
        return "not recorded (no run.json)"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in sorted(value.items()))
    return str(value)


# --- Style transfer ---------------------------------------------------------


def _style_transfer_html(store: OutputStore, results: pa.Table, convergence: pa.Table) -> str:
    rows = results.to_pylist()
    labels = _configuration_labels(rows, STYLE_TRANSFER_SETTINGS)
    rows.sort(key=lambda r: (r["content"], r["style"], labels[r["task_id"]], r["task_id"]))
    losses = _losses_by_task(convergence, ("total_loss", "style_loss", "content_loss", "tv_loss", "size_px"),
                             "iteration")

    parts = [_failed_table_html(rows)]
    parts.append(_grid_html(store, rows, labels, losses))
    parts.append(_convergence_html(store, rows, labels, losses))
    parts.append(_contact_sheet_html(store, rows, labels))
    return "\n".join(parts)


def _configuration_labels(rows: list[dict], settings: tuple[str, ...], exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Name each task's configuration by its optimizer and the hyperparameters and settings that vary in the run.

    Keys in `exclude` are left out of the names, so tasks that differ only there share one.
    """
    described = {}
    for row in rows:
        values = dict(json.loads(row.get("settings") or "{}"))
        values.update(json.loads(row["hyperparameters"] or "{}"))
        values.update({name: row[name] for name in settings if name in row})
        described[row["task_id"]] = (row["optimizer"], values)

    varying = set()
    for optimizer in {o for o, _ in described.values()}:
        dicts = [v for o, v in described.values() if o == optimizer]
        for key in set().union(*dicts):
            if len({json.dumps(d.get(key)) for d in dicts}) > 1:
                varying.add(key)

    labels = {}
    for task_id, (optimizer, values) in described.items():
        varying_settings = [f"{key}={_format_number(values[key])}" for key in sorted(varying - set(exclude)) if key in values]
        labels[task_id] = " ".join([optimizer, *varying_settings])
    return labels


def _format_number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _losses_by_task(convergence: pa.Table, columns: tuple[str, ...], step_column: str) -> dict[str, dict]:
    """Return {task_id: {column: (steps, values)}} with the rows sorted by step."""
    table = convergence.sort_by([("task_id", "ascending"), (step_column, "ascending")]).to_pydict()
    losses: dict[str, dict] = {}
    for index, task_id in enumerate(table["task_id"]):
        series = losses.setdefault(task_id, {c: ([], []) for c in columns})
        for column in columns:
            series[column][0].append(table[step_column][index])
            series[column][1].append(table[column][index])
    return losses


def _failed_table_html(rows: list[dict]) -> str:
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        return "<h2>Failed tasks</h2>\n<p>No task failed.</p>\n"
    lines = [f"<tr><td><code>{html.escape(r['task_id'])}</code></td><td>{html.escape(str(r['content']))}</td>"
             f"<td>{html.escape(str(r['style']))}</td><td class='error'>{html.escape(r['error'] or '')}</td></tr>"
             for r in failed[:MAX_TABLE_ROWS]]
    note = _limit_note(len(failed), MAX_TABLE_ROWS, "failed tasks")
    return (f"<h2>Failed tasks ({len(failed)})</h2>\n{note}<table><tr><th>task</th><th>content image</th>"
            f"<th>style image</th><th>error</th></tr>{''.join(lines)}</table>\n")


def _limit_note(total: int, limit: int, items: str) -> str:
    if total <= limit:
        return ""
    return f"<p class='note'>Showing the first {limit} of {total} {items}; the Parquet tables contain all of them.</p>\n"


def _grid_html(store: OutputStore, rows: list[dict], labels: dict[str, str], losses: dict[str, dict]) -> str:
    """Compare configurations across pairs: best loss by learning rate (plot) and loss at fixed iterations (table)."""
    done = [r for r in rows if r["status"] != "failed"]
    pair = {r["task_id"]: (r["content"], r["style"]) for r in done}
    best = {r["task_id"]: r["best_loss"] for r in done}

    plot = _best_loss_by_learning_rate(done, _configuration_labels(done, STYLE_TRANSFER_SETTINGS, ("learning_rate",)),
                                       _relative_to_group_best(best, pair))
    _write_figure(store, f"{PLOTS_FOLDER}/best_loss_by_learning_rate.png", plot)

    checkpoints = _checkpoints(max((max(s["total_loss"][0], default=0) for s in losses.values()), default=0))
    columns = {}
    for k in checkpoints:
        at_k = {t: _value_at(losses[t]["total_loss"], k) for t in pair if t in losses}
        columns[f"iteration {k}"] = _geometric_mean_by_label(_relative_to_group_best(at_k, pair), labels)
    columns["best loss"] = _geometric_mean_by_label(_relative_to_group_best(best, pair), labels)
    seconds = {}
    for r in done:
        seconds.setdefault(labels[r["task_id"]], []).append(r["seconds_per_iteration"])
    pairs = {label: len({pair[t] for t in pair if labels[t] == label}) for label in set(labels.values())}

    table = _ranking_table_html(columns, {"pairs": pairs, "s/iteration (median)": _medians(seconds)}, "best loss")
    return (f"<h2>Grid comparison</h2>\n<p>{RELATIVE_LOSS_NOTE}</p>\n"
            f"{_image_html(f'{PLOTS_FOLDER}/best_loss_by_learning_rate.png', 'best loss by learning rate', 'plot')}\n"
            f"<h3>Loss at fixed iterations, relative to the best configuration of each pair</h3>\n{table}")


def _checkpoints(last_iteration: int) -> list[int]:
    reached = [k for k in CHECKPOINT_ITERATIONS if k <= last_iteration]
    return reached or [last_iteration]


def _value_at(series: tuple[list, list], step: int) -> float | None:
    steps, values = series
    for s, v in zip(steps, values):
        if s == step:
            return v
    return None


def _relative_to_group_best(values: dict[str, float | None], groups: dict[str, tuple]) -> dict[str, float]:
    """Divide each task's positive finite value by the lowest such value in its group."""
    usable = {t: v for t, v in values.items() if v is not None and math.isfinite(v) and v > 0}
    lowest: dict[tuple, float] = {}
    for task_id, value in usable.items():
        group = groups[task_id]
        lowest[group] = min(value, lowest.get(group, math.inf))
    return {t: v / lowest[groups[t]] for t, v in usable.items()}


def _geometric_mean_by_label(values: dict[str, float], labels: dict[str, str]) -> dict[str, float]:
    logs: dict[str, list[float]] = {}
    for task_id, value in values.items():
        logs.setdefault(labels[task_id], []).append(math.log(value))
    return {label: math.exp(statistics.fmean(items)) for label, items in logs.items()}


def _medians(values: dict[str, list]) -> dict[str, float]:
    finite = {k: [v for v in items if v is not None and math.isfinite(v)] for k, items in values.items()}
    return {k: statistics.median(items) for k, items in finite.items() if items}


def _ranking_table_html(columns: dict[str, dict[str, float]], extra: dict[str, dict], sort_column: str) -> str:
    """Return a table with one row per configuration, the lowest value of each column in bold, sorted by `sort_column`."""
    labels = sorted(set().union(*columns.values(), *extra.values()),
                    key=lambda label: (columns[sort_column].get(label, math.inf), label))
    lowest = {name: min(values.values(), default=None) for name, values in columns.items()}

    head = "".join(f"<th>{html.escape(name)}</th>" for name in [*columns, *extra])
    lines = []
    for label in labels[:MAX_TABLE_ROWS]:
        cells = []
        for name, values in columns.items():
            value = values.get(label)
            text = "–" if value is None else f"{value:.4g}"
            cells.append(f"<td class='best'>{text}</td>" if value is not None and value == lowest[name]
                         else f"<td>{text}</td>")
        cells += [f"<td>{_format_cell(values.get(label))}</td>" for values in extra.values()]
        lines.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    note = _limit_note(len(labels), MAX_TABLE_ROWS, "configurations")
    return f"{note}<table class='grid'><tr><th>configuration</th>{head}</tr>{''.join(lines)}</table>\n" \
           "<p class='note'>– : no task of this configuration reached that point with a finite loss.</p>\n"


def _format_cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _best_loss_by_learning_rate(rows: list[dict], series_labels: dict[str, str], relative: dict[str, float]) -> Figure:
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.add_subplot()
    points: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        if row["task_id"] in relative:
            by_rate = points.setdefault(series_labels[row["task_id"]], {})
            by_rate.setdefault(row["learning_rate"], []).append(math.log(relative[row["task_id"]]))

    for label, by_rate in sorted(points.items())[:MAX_PLOT_LINES]:
        rates = sorted(by_rate)
        axes.plot(rates, [math.exp(statistics.fmean(by_rate[r])) for r in rates], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("learning rate (dimensionless)")
    axes.set_ylabel("best total loss ÷ lowest on the same pair\n(geometric mean over pairs; 1 is best)")
    axes.set_title(_title("Best loss by learning rate; failed and non-finite tasks left out", len(points)))
    axes.grid(True, which="both", alpha=0.3)
    if points:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _title(text: str, lines: int) -> str:
    return text if lines <= MAX_PLOT_LINES else f"{text}\n(first {MAX_PLOT_LINES} of {lines} lines)"


def _convergence_html(store: OutputStore, rows: list[dict], labels: dict[str, str], losses: dict[str, dict]) -> str:
    pairs: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["task_id"] in losses:
            pairs.setdefault((row["content"], row["style"]), []).append(row)

    parts = ["<h2>Convergence</h2>\n", _limit_note(len(pairs), MAX_CONVERGENCE_PLOTS, "content/style pairs")]
    for index, ((content, style), pair_rows) in enumerate(list(pairs.items())[:MAX_CONVERGENCE_PLOTS]):
        relative = f"{PLOTS_FOLDER}/convergence_{index:03d}.png"
        figure = _convergence_figure(pair_rows, labels, losses, f"{_short_name(content)} + {_short_name(style)}")
        _write_figure(store, relative, figure)
        parts.append(f"<h3>{html.escape(str(content))}<br>+ {html.escape(str(style))}</h3>\n"
                     f"{_image_html(relative, f'convergence of {content} with {style}', 'plot')}\n")
    return "".join(parts)


def _short_name(source: str) -> str:
    return str(source).rstrip("/").rsplit("/", 1)[-1]


def _convergence_figure(rows: list[dict], labels: dict[str, str], losses: dict[str, dict], title: str) -> Figure:
    names = [("total_loss", "total loss"), ("style_loss", "weighted style loss"),
             ("content_loss", "weighted content loss")]
    # Runs with tv_weight 0, or written before the column existed, get no total-variation panel.
    if any(v for row in rows for v in losses[row["task_id"]]["tv_loss"][1]):
        names.append(("tv_loss", "weighted total-variation loss"))
    figure = Figure(figsize=(4 * len(names) + 2, 3.8), layout="constrained")
    panels = figure.subplots(1, len(names), sharex=True)
    for axes, (column, name) in zip(panels, names):
        for row in rows[:MAX_PLOT_LINES]:
            steps, values = losses[row["task_id"]][column]
            # A log axis cannot show zero, and the content loss is zero at
            # iteration 0 when the optimization starts from the content image.
            positive_points = [(s, v) for s, v in zip(steps, values) if v is not None and math.isfinite(v) and v > 0]
            if positive_points:
                axes.plot(*zip(*positive_points), linewidth=1.2, label=f"{labels[row['task_id']]} ({row['status']})")
        for step, size_px in _size_changes(losses[rows[0]["task_id"]]["size_px"]):
            axes.axvline(step - 0.5, color="gray", linestyle="--", linewidth=0.8)
            axes.annotate(f"{size_px} px", (step - 0.5, 1.0), xycoords=("data", "axes fraction"), fontsize="x-small",
                          color="gray", ha="left", va="top", rotation=90)
        axes.set_yscale("log")
        axes.set_xlabel("iteration (optimizer step)")
        axes.set_ylabel(f"{name} (dimensionless)")
        axes.set_title(name)
        axes.grid(True, which="both", alpha=0.3)
    figure.suptitle(_title(title, len(rows)))
    handles, names = max((a.get_legend_handles_labels() for a in panels), key=lambda h: len(h[0]))
    if handles:
        figure.legend(handles, names, fontsize="x-small", loc="outside right upper")
    return figure


def _size_changes(series) -> list[tuple[int, int]]:
    """Return (first iteration, size) at each move of a coarse-to-fine run to a larger size. One size gives none."""
    steps, sizes = series
    return [(step, size) for step, size, previous in zip(steps[1:], sizes[1:], sizes) if size != previous and size]


# --- Contact sheet ----------------------------------------------------------


def _contact_sheet_html(store: OutputStore, rows: list[dict], labels: dict[str, str]) -> str:
    """Return one card per task (the first MAX_CARDS): content, style and result thumbnails with a caption."""
    store.write_bytes(PLACEHOLDER_FILE, _placeholder_png())
    sources: dict[str, str] = {}  # content or style source -> thumbnail path relative to the output
    cards = []
    for row in rows[:MAX_CARDS]:
        content = _source_thumbnail(store, row["content"], sources)
        style = _source_thumbnail(store, row["style"], sources)
        result = _result_thumbnail(store, row)
        cards.append(_card_html(row, labels[row["task_id"]], content, style, result))

    note = _limit_note(len(rows), MAX_CARDS, "tasks")
    return (f"<h2>Contact sheet ({len(rows)} tasks)</h2>\n{note}"
            f"<div class='sheet'>\n{''.join(cards)}</div>\n")


def _card_html(row: dict, label: str, content: str, style: str, result: str | None) -> str:
    if result is not None:
        outcome = _image_html(result, f"result of task {row['task_id']}", "thumbnail")
    else:
        outcome = f"<div class='missing'>{html.escape(row['error'] or 'no image')}</div>"
    hyperparameters = ", ".join(f"{k}={_format_number(v)}"
                                for k, v in sorted(json.loads(row["hyperparameters"] or "{}").items()))
    caption = (f"<b>{html.escape(label)}</b><br>{html.escape(hyperparameters)}<br>"
               f"best loss {_format_cell(row['best_loss'])} at iteration {_format_cell(row['best_iteration'])}<br>"
               f"{_format_cell(row['iterations_run'])} iterations, {_format_cell(row['wall_s'])} s "
               f"({_format_cell(row['seconds_per_iteration'])} s/iteration)<br>"
               f"<span class='status-{html.escape(row['status'])}'>{html.escape(row['status'])}</span> "
               f"<code>{html.escape(row['task_id'])}</code>")
    if row["status"] == "failed" and row["error"]:
        caption += f"<br><span class='error'>{html.escape(row['error'])}</span>"
    content_html = _image_html(content, f"content image {row['content']}", "thumbnail")
    style_html = _image_html(style, f"style image {row['style']}", "thumbnail")
    return (f"<article class='card' data-task-id='{html.escape(row['task_id'])}' "
            f"data-status='{html.escape(row['status'])}'>\n"
            f"<div class='images'>{content_html}{style_html}{outcome}</div>\n"
            f"<p>{caption}</p>\n</article>\n")


def _source_thumbnail(store: OutputStore, source: str, done: dict[str, str]) -> str:
    """Write a thumbnail of a content or style image once per source; an unreadable source gets the placeholder."""
    if source in done:
        return done[source]

    # Imported here because only the contact sheet decodes source images.
    from stylecore.images import load_image

    try:
        rgb = load_image(source, THUMBNAIL_SIZE_PX, min_size=1)
    except (ValueError, OSError) as error:  # ImageError is a ValueError
        logger.warning("Using a placeholder thumbnail for %s: %s", source, error)
        done[source] = PLACEHOLDER_FILE
        return PLACEHOLDER_FILE

    relative = f"{THUMBNAILS_FOLDER}/source_{hashlib.sha256(source.encode()).hexdigest()[:16]}.jpg"
    store.write_bytes(relative, _jpeg(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))))
    done[source] = relative
    return relative


def _result_thumbnail(store: OutputStore, row: dict) -> str | None:
    """Write a thumbnail of the task's result from its `image_png` bytes; None when the task has no image."""
    if not row["image_png"]:
        return None
    try:
        with Image.open(io.BytesIO(row["image_png"])) as image:
            image.thumbnail((THUMBNAIL_SIZE_PX, THUMBNAIL_SIZE_PX), Image.Resampling.LANCZOS)
            data = _jpeg(image.convert("RGB"))
    except (OSError, ValueError) as error:
        logger.warning("Using a placeholder thumbnail for task %s: cannot decode image_png (%s)",
                       row["task_id"], error)
        return PLACEHOLDER_FILE
    relative = f"{THUMBNAILS_FOLDER}/result_{row['task_id']}.jpg"
    store.write_bytes(relative, data)
    return relative


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY)
    return buffer.getvalue()


def _placeholder_png() -> bytes:
    image = Image.new("RGB", (THUMBNAIL_SIZE_PX, THUMBNAIL_SIZE_PX), (220, 220, 220))
    draw = ImageDraw.Draw(image)
    draw.line([(0, 0), (THUMBNAIL_SIZE_PX - 1, THUMBNAIL_SIZE_PX - 1)], fill=(160, 160, 160), width=2)
    draw.line([(0, THUMBNAIL_SIZE_PX - 1), (THUMBNAIL_SIZE_PX - 1, 0)], fill=(160, 160, 160), width=2)
    draw.text((8, THUMBNAIL_SIZE_PX // 2 - 6), "unreadable", fill=(60, 60, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- Optimizer study --------------------------------------------------------


def _optimizer_study_html(store: OutputStore, results: pa.Table, convergence: pa.Table) -> str:
    from jobs import optimizer_study
    from stylecore import linear

    rows = sorted(results.to_pylist(), key=lambda r: (r["optimizer"], r["learning_rate"], r["trial_id"]))
    labels = _configuration_labels(rows, ())
    series = _losses_by_task(convergence, ("loss", "w1", "w2", "b"), "step")
    first_losses = [v for s in series.values() for step, v in zip(*s["loss"]) if step == 1 and math.isfinite(v)]
    # Diverging trials reach 1e30 and more, so the axes stop at a multiple of the largest first-step loss.
    top = optimizer_study.LOSS_PLOT_MARGIN * max(first_losses) if first_losses else None
    bottom = optimizer_study.LOSS_PLOT_BOTTOM
    truth = {"w1": linear.TRUE_WEIGHTS[0], "w2": linear.TRUE_WEIGHTS[1], "b": linear.TRUE_BIAS}

    figures = {
        "study_loss_by_step.png": _study_loss_figure(rows, labels, series, (bottom, top)),
        "study_final_loss_by_learning_rate.png": _study_learning_rate_figure(rows, (bottom, top)),
        "study_fitted_parameters.png": _fitted_parameters_figure(rows, labels, series, truth),
    }
    parts = ["<h2>Loss and fitted parameters</h2>\n"]
    for name, figure in figures.items():
        _write_figure(store, f"{PLOTS_FOLDER}/{name}", figure)
        parts.append(_image_html(f"{PLOTS_FOLDER}/{name}", name.removesuffix(".png").replace("_", " "), "plot"))

    parts.append(f"<h2>Grid comparison</h2>\n<p>Full-data MSE (squared units of y), mean over seeds; true values "
                 f"w = ({truth['w1']:g}, {truth['w2']:g}), b = {truth['b']:g}.</p>\n")
    parts.append(_study_table_html(rows, labels, series, truth))
    parts.append(_trials_table_html(rows))
    return "\n".join(parts)


def _study_table_html(rows: list[dict], labels: dict[str, str], series: dict[str, dict], truth: dict) -> str:
    last_step = max((max(s["loss"][0], default=0) for s in series.values()), default=0)
    by_label: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        values = by_label.setdefault(labels[row["trial_id"]], {})
        for k in _checkpoints(last_step):
            loss = _value_at(series[row["trial_id"]]["loss"], k) if row["trial_id"] in series else None
            values.setdefault(f"step {k}", []).append(loss)
        values.setdefault("final loss", []).append(row["final_loss"])
        for name in ("w1", "w2", "b"):
            values.setdefault(name, []).append(row[name])
        values.setdefault("steps to threshold", []).append(row["steps_to_threshold"])

    ranked = [c for c in next(iter(by_label.values()), {}) if c.startswith("step ")] + ["final loss"]
    columns = {c: _finite_means({label: v[c] for label, v in by_label.items()}) for c in ranked}
    extra = {name: _finite_means({label: v[name] for label, v in by_label.items()})
             for name in ("w1", "w2", "b", "steps to threshold")}
    extra["max |parameter − true|"] = {label: max(abs(extra[n][label] - truth[n]) for n in truth)
                                       for label in extra["w1"] if all(label in extra[n] for n in truth)}
    return _ranking_table_html(columns, extra, "final loss")


def _finite_means(values: dict[str, list]) -> dict[str, float]:
    finite = {k: [float(v) for v in items if v is not None and math.isfinite(v)] for k, items in values.items()}
    return {k: statistics.fmean(items) for k, items in finite.items() if items}


def _trials_table_html(rows: list[dict]) -> str:
    columns = ("trial_id", "optimizer", "learning_rate", "batch_size", "seed", "steps_run", "final_loss",
               "best_loss", "steps_to_threshold", "w1", "w2", "b", "wall_s", "status")
    head = "".join(f"<th>{name}</th>" for name in columns)
    lines = ["<tr>" + "".join(f"<td>{_format_cell(row[name])}</td>" for name in columns) + "</tr>"
             for row in rows[:MAX_TABLE_ROWS]]
    return (f"<h2>Trials ({len(rows)})</h2>\n{_limit_note(len(rows), MAX_TABLE_ROWS, 'trials')}"
            f"<table>{''.join(['<tr>' + head + '</tr>', *lines])}</table>\n")


def _study_loss_figure(rows: list[dict], labels: dict[str, str], series: dict[str, dict], limits: tuple) -> Figure:
    figure = Figure(figsize=(11, 5), layout="constrained")
    axes = figure.add_subplot()
    seeds = len({r["seed"] for r in rows})
    plotted = [r for r in rows if r["trial_id"] in series]
    for row in plotted[:MAX_PLOT_LINES]:
        steps, losses = series[row["trial_id"]]["loss"]
        positive_points = [(s, v) for s, v in zip(steps, losses) if math.isfinite(v) and v > 0]
        label = labels[row["trial_id"]] + (f" seed={row['seed']}" if seeds > 1 else "")
        if positive_points:
            axes.plot(*zip(*positive_points), linewidth=1.2, label=f"{label} ({row['status']})")
    axes.set_yscale("log")
    axes.set_ylim(*limits)
    axes.set_xlabel("step (one optimizer update)")
    axes.set_ylabel("full-data MSE (squared units of y)")
    axes.set_title(_title("Loss after each step", len(plotted)))
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_lines():
        axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _study_learning_rate_figure(rows: list[dict], limits: tuple) -> Figure:
    figure = Figure(figsize=(9, 4.5), layout="constrained")
    axes = figure.add_subplot()
    series_labels = _configuration_labels(rows, (), ("learning_rate",))
    points: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        if math.isfinite(row["final_loss"]):
            by_rate = points.setdefault(series_labels[row["trial_id"]], {})
            by_rate.setdefault(row["learning_rate"], []).append(row["final_loss"])
    for label, by_rate in sorted(points.items())[:MAX_PLOT_LINES]:
        rates = sorted(by_rate)
        axes.plot(rates, [statistics.fmean(by_rate[r]) for r in rates], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_ylim(*limits)
    axes.set_xlabel("learning rate (dimensionless)")
    axes.set_ylabel("final full-data MSE (squared units of y),\nmean over seeds")
    axes.set_title(_title("Final loss by learning rate; diverged trials left out", len(points)))
    axes.grid(True, which="both", alpha=0.3)
    if points:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _fitted_parameters_figure(rows: list[dict], labels: dict[str, str], series: dict[str, dict],
                              truth: dict) -> Figure:
    """Plot w1, w2 and b against the step, one line per configuration (its first seed), with the true values."""
    figure = Figure(figsize=(13, 4), layout="constrained")
    panels = figure.subplots(1, 3, sharex=True)
    first_trials: dict[str, dict] = {}
    for row in rows:
        if row["trial_id"] in series:
            first_trials.setdefault(labels[row["trial_id"]], row)
    for axes, name in zip(panels, ("w1", "w2", "b")):
        for label, row in list(first_trials.items())[:MAX_PLOT_LINES]:
            steps, values = series[row["trial_id"]][name]
            positive_points = [(s, v) for s, v in zip(steps, values) if math.isfinite(v) and abs(v) < 10 * abs(truth[name]) + 10]
            if positive_points:
                axes.plot(*zip(*positive_points), linewidth=1.2, label=label)
        axes.axhline(truth[name], color="black", linestyle="--", linewidth=1, label="true value")
        axes.set_xlabel("step (one optimizer update)")
        axes.set_ylabel(f"{name} (units of y{' per unit of x' if name != 'b' else ''})")
        axes.set_title(f"fitted {name}; true {truth[name]:g}")
        axes.grid(True, alpha=0.3)
    figure.suptitle(_title("Fitted parameters after each step (first seed of each configuration; "
                           "values far from the truth left out)", len(first_trials)))
    panels[-1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


# --- Page -------------------------------------------------------------------

# Runs after every image has loaded or failed, so a headless browser can read
# the result from <body> with --dump-dom.
IMAGE_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (image) { return image.naturalWidth === 0; });
  document.body.dataset.imageCount = images.length;
  document.body.dataset.brokenImageCount = broken.length;
  document.body.dataset.cardCount = document.querySelectorAll("article.card").length;
});
</script>"""

PAGE_STYLE = """<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
td.best { font-weight: bold; background: #e6f4e6; }
.note { color: #555; font-size: 0.9em; }
.error { color: #a00; white-space: pre-wrap; }
.sheet { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { border: 1px solid #ccc; padding: 0.4em; width: 410px; font-size: 0.8em; }
.card .images { display: flex; gap: 4px; align-items: flex-start; }
.card img.thumbnail { width: 128px; height: auto; max-height: 128px; object-fit: contain; }
.card .missing { width: 128px; height: 128px; background: #fee; color: #a00; overflow: hidden; font-size: 0.85em; }
img.plot { max-width: 100%; }
.status-failed { color: #a00; font-weight: bold; }
.status-diverged { color: #a60; font-weight: bold; }
</style>"""


def _page_html(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>{html.escape(title)}</title>\n{PAGE_STYLE}\n{IMAGE_CHECK_SCRIPT}\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def _image_html(relative: str, alt: str, css_class: str) -> str:
    return f"<img class='{css_class}' src='{html.escape(relative)}' alt='{html.escape(alt)}' decoding='async'>"


def _write_figure(store: OutputStore, relative: str, figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI)
    store.write_bytes(relative, buffer.getvalue())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.report", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="a run's output folder: a local path or a file://, s3:// or gs:// URI")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Write the report of the output folder in `argv`; returns 0, or 2 when the folder contains no run."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        location = write_report(args.output)
    except (FileNotFoundError, ValueError) as error:
        logger.error("%s", error)
        return 2
    print(location)
    return 0


if __name__ == "__main__":
    sys.exit(main())
