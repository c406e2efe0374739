"""Tests for jobs/report.py on Parquet outputs written with the jobs' schemas, and in headless chromium."""

import datetime
import io
import json
import os
import re
import shutil
import subprocess

import pyarrow as pa
import pytest
from PIL import Image

from jobs import report
from jobs.outputs import CONVERGENCE_SCHEMA, RESULTS_SCHEMA, OutputStore
from conftest import make_rgb

ITERATIONS = 12  # reaches the first checkpoint, iteration 10
LEARNING_RATES = (1.0, 4.0)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_TIMEOUT_S = 120


def png_bytes(height: int, width: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(make_rgb(height, width, seed)).save(buffer, format="PNG")
    return buffer.getvalue()


def style_transfer_tables(task_id: str, content: str, style: str, learning_rate: float, status: str) -> dict:
    """Return the results and convergence pieces of one task, as the stylize job writes them."""
    failed = status == "failed"
    steps = [] if failed else list(range(ITERATIONS))
    total = [1e6 / (1 + learning_rate * i) for i in steps]
    convergence = pa.table({
        "task_id": [task_id] * len(steps),
        "iteration": steps,
        "total_loss": total,
        "style_loss": [0.9 * t for t in total],
        "content_loss": [0.1 * t * min(i, 1) for i, t in zip(steps, total)],  # zero at iteration 0
        "tv_loss": [0.0] * len(steps),
        "elapsed_s": [0.1 * i for i in steps],
        "size_px": [32 for _ in steps],
    })
    row = {name: None for name in RESULTS_SCHEMA.names}
    row.update({
        "task_id": task_id, "content": content, "style": style, "optimizer": "adam",
        "hyperparameters": json.dumps({"learning_rate": learning_rate, "beta1": 0.9}),
        "learning_rate": learning_rate, "image_size": 32, "iterations": ITERATIONS, "seed": 0,
        "settings": json.dumps({"iterations": ITERATIONS, "init": "content"}),
        "weights": "random", "weights_source": "random (seed 0)", "status": status, "device": "CPU",
        "wall_s": 1.5, "finished_at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    })
    if failed:
        row["error"] = f"ImageError: {content}: file not found. Check the path."
    else:
        row.update({"iterations_run": ITERATIONS, "best_loss": total[-1], "best_iteration": ITERATIONS - 1,
                    "final_loss": total[-1], "seconds_per_iteration": 0.1, "width_px": 32, "height_px": 27,
                    "image_png": png_bytes(27, 32, seed=len(task_id))})
    results = pa.Table.from_pylist([row], schema=RESULTS_SCHEMA)
    return {"results": results, "convergence": convergence.cast(CONVERGENCE_SCHEMA)}


@pytest.fixture
def style_transfer_output(tmp_path, image_files):
    """Write 5 pending tasks: 2 contents x 1 style x 2 learning rates, plus one failed; returns the folder."""
    contents, styles = image_files
    output = tmp_path / "run"
    store = OutputStore(str(output))
    index = 0
    for content in contents:
        for learning_rate in LEARNING_RATES:
            tables = style_transfer_tables(f"task{index:02d}", str(content), str(styles[0]), learning_rate,
                                           "succeeded")
            store.write_task(f"task{index:02d}", tables)
            index += 1
    missing = str(tmp_path / "missing.png")
    store.write_task("failed00", style_transfer_tables("failed00", missing, str(styles[0]), 1.0, "failed"))
    return output


def image_sources(page: str) -> list[str]:
    return re.findall(r"<img [^>]*src='([^']+)'", page)


def test_report_in_progress_run_renders(style_transfer_output):
    assert not list((style_transfer_output / "results").glob("part-*.parquet"))

    location = report.write_report(str(style_transfer_output))

    assert location == str(style_transfer_output / "report.html")
    page = (style_transfer_output / "report.html").read_text(encoding="utf-8")
    assert page.count("<article class='card'") == 5
    assert "5 task(s) not yet compacted" in page
    assert "1 failed, 4 succeeded" in page


def test_report_compacted_run_files_exist(style_transfer_output):
    OutputStore(str(style_transfer_output)).compact()
    assert not list((style_transfer_output / "results" / "_pending").glob("*.parquet"))

    report.write_report(str(style_transfer_output))

    page = (style_transfer_output / "report.html").read_text(encoding="utf-8")
    sources = image_sources(page)
    assert sources
    for source in sources:
        assert not source.startswith(("/", "http:", "https:", "file:")), source
        assert (style_transfer_output / source).is_file(), source
    plots = sorted(p.name for p in (style_transfer_output / "report" / "plots").iterdir())
    assert plots == ["best_loss_by_learning_rate.png", "convergence_000.png", "convergence_001.png"]
    assert "report/plots/convergence_000.png" in sources
    assert "report/thumbnails/result_task00.jpg" in sources
    assert "<th>iteration 10</th>" in page
    assert "none" in page.split("pending pieces", 1)[1][:100]


def test_report_thumbnails_small(style_transfer_output):
    report.write_report(str(style_transfer_output))

    for path in (style_transfer_output / "report" / "thumbnails").iterdir():
        with Image.open(path) as image:
            assert max(image.size) <= report.THUMBNAIL_SIZE_PX, path.name
        assert path.stat().st_size < 20_000, path.name


def test_report_failed_task_shows_error_and_placeholder(style_transfer_output, tmp_path):
    report.write_report(str(style_transfer_output))

    page = (style_transfer_output / "report.html").read_text(encoding="utf-8")
    card = page.split("data-task-id='failed00'", 1)[1].split("</article>", 1)[0]
    assert "missing.png: file not found" in card
    assert report.PLACEHOLDER_FILE in card
    assert "Failed tasks (1)" in page
    assert (style_transfer_output / report.PLACEHOLDER_FILE).is_file()


def test_report_card_limit_says_so(style_transfer_output, monkeypatch):
    monkeypatch.setattr(report, "MAX_CARDS", 2)

    report.write_report(str(style_transfer_output))

    page = (style_transfer_output / "report.html").read_text(encoding="utf-8")
    assert page.count("<article class='card'") == 2
    assert "Showing the first 2 of 5 tasks" in page


def test_report_reads_run_json(style_transfer_output):
    run_info = {"run_id": "nightly-42", "manifest": "manifests/demo.yaml", "started_at": "2026-01-02T03:00:00Z",
                "finished_at": "2026-01-02T03:05:00Z", "counts": {"succeeded": 4, "failed": 1},
                "cluster_resources": {"CPU": 16.0, "GPU": 1.0}, "versions": {"ray": "2.0", "tensorflow": "2.1"}}
    (style_transfer_output / "run.json").write_text(json.dumps(run_info), encoding="utf-8")

    report.write_report(str(style_transfer_output))

    page = (style_transfer_output / "report.html").read_text(encoding="utf-8")
    assert "Run report: nightly-42" in page
    assert "manifests/demo.yaml" in page
    assert "2026-01-02T03:05:00Z" in page
    assert "CPU: 16.0, GPU: 1.0" in page
    assert "ray: 2.0, tensorflow: 2.1" in page


def test_report_older_schema_reads(style_transfer_output):
    # A results piece written before the `settings` and `tv_weight` columns existed.
    store = OutputStore(str(style_transfer_output))
    old = style_transfer_tables("older000", "a.png", "b.png", 1.0, "succeeded")
    store.write_table("results/_pending/older000.parquet", old["results"].drop_columns(["settings", "tv_weight"]))

    report.write_report(str(style_transfer_output))

    page = (style_transfer_output / "report.html").read_text(encoding="utf-8")
    assert page.count("<article class='card'") == 6


def test_report_main_without_results_exits_2(tmp_path, caplog):
    assert report.main([str(tmp_path)]) == 2
    assert "no results Parquet files" in caplog.text


def test_report_main_prints_location(style_transfer_output, capsys):
    assert report.main([str(style_transfer_output)]) == 0
    assert capsys.readouterr().out.strip() == str(style_transfer_output / "report.html")


def test_report_optimizer_study(tmp_path):
    from jobs import optimizer_study

    output = tmp_path / "study"
    store = OutputStore(str(output), optimizer_study.TABLES)
    steps = 60
    for index, (optimizer, learning_rate) in enumerate([("gd", 0.01), ("gd", 0.1), ("adam", 0.1)]):
        trial_id = f"trial{index}"
        rate = 1 + 10 * learning_rate
        losses = [1.0 + 30.0 / (1 + rate * s) for s in range(1, steps + 1)]
        hyperparameters = json.dumps({"batch_size": 2000, "learning_rate": learning_rate}, sort_keys=True)
        common = {"trial_id": trial_id, "task_id": trial_id, "optimizer": optimizer,
                  "hyperparameters": hyperparameters, "seed": 1}
        convergence = pa.table({
            **{key: [value] * steps for key, value in common.items()},
            "step": list(range(1, steps + 1)), "loss": losses,
            "w1": [4.0 * (1 - 1 / (1 + s)) for s in range(steps)], "w2": [3.0] * steps, "b": [2.0] * steps,
        }, schema=optimizer_study.CONVERGENCE_SCHEMA)
        results = pa.Table.from_pylist([{
            **common, "learning_rate": learning_rate, "batch_size": 2000, "steps": steps, "steps_run": steps,
            "loss_threshold": 1.1, "final_loss": losses[-1], "best_loss": losses[-1], "steps_to_threshold": None,
            "w1": 3.9, "w2": 3.0, "b": 2.0, "wall_s": 0.5, "status": "succeeded",
            "finished_at": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
        }], schema=optimizer_study.RESULTS_SCHEMA)
        store.write_task(trial_id, {"convergence": convergence, "results": results})

    report.write_report(str(output))

    page = (output / "report.html").read_text(encoding="utf-8")
    assert "optimizer study" in page
    assert "<th>step 10</th>" in page and "<th>step 50</th>" in page
    assert "max |parameter − true|" in page
    assert "w = (4, 3), b = 2" in page
    for name in ("study_loss_by_step.png", "study_final_loss_by_learning_rate.png", "study_fitted_parameters.png"):
        assert (output / "report" / "plots" / name).is_file()
        assert f"report/plots/{name}" in page
    assert "<article class='card'" not in page


def run_chromium(arguments: list[str], profile) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False)


def test_report_renders_in_chromium(style_transfer_output, tmp_path):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        message = f"chromium not found at {CHROMIUM}; install it with scripts/install-chromium.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    report.write_report(str(style_transfer_output))
    url = (style_transfer_output / "report.html").as_uri()
    screenshot = tmp_path / "report.png"

    shot = run_chromium([f"--screenshot={screenshot}", "--virtual-time-budget=10000", "--window-size=1280,2400", url],
                        tmp_path / "profile-1")
    dom = run_chromium(["--dump-dom", "--virtual-time-budget=10000", "--window-size=1280,2400", url],
                       tmp_path / "profile-2")

    assert shot.returncode == 0, shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2400)
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 100  # not a blank page
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:2000]
    attributes = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert attributes.get("card-count") == "5", attributes
    assert int(attributes.get("image-count", "0")) >= 5 * 3, attributes
    assert attributes.get("broken-image-count") == "0", attributes


def test_size_changes_mark_coarse_to_fine_levels():
    assert report._size_changes(([0, 1, 2, 3, 4], [32, 32, 48, 48, 64])) == [(2, 48), (4, 64)]
    assert report._size_changes(([0, 1], [32, 32])) == []
    # Rows written before size_px existed read back as null.
    assert report._size_changes(([0, 1], [None, None])) == []
