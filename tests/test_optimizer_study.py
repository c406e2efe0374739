"""Tests for jobs/optimizer_study.py: a tiny study on local Ray, read back from Parquet."""

import contextlib
import io
import logging

import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs import optimizer_study
from jobs.manifest import ManifestError
from jobs.outputs import OutputStore

# 2 gd learning rates + 1 adam setting, over 2 seeds: 6 trials of 20 steps.
# A learning rate of 100 makes gd diverge within a few steps.
TINY_MANIFEST = """\
output: study
steps: 20
seeds: [1, 2]
loss_threshold: 50.0
optimizers:
  - name: gd
    learning_rate: [0.01, 100.0]
  - name: adam
    batch_size: 4
"""
TRIALS = 6
STEPS = 20


def write_manifest(folder, text: str, name: str = "study.yaml"):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished_study(local_ray, tmp_path_factory):
    """Run the tiny study once; returns (manifest path, output folder, exit status, printed text)."""
    folder = tmp_path_factory.mktemp("study")
    manifest = write_manifest(folder, TINY_MANIFEST)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = optimizer_study.main([str(manifest)])
    return manifest, folder / "study", status, printed.getvalue()


def test_study_exits_zero(finished_study):
    _, _, status, _ = finished_study

    assert status == 0


def test_results_rows_and_schema(finished_study):
    _, output, _, _ = finished_study
    table = pq.read_table(output / "results")

    assert table.schema.equals(optimizer_study.RESULTS_SCHEMA)
    assert table.num_rows == TRIALS
    assert len(set(table.column("trial_id").to_pylist())) == TRIALS
    assert table.column("trial_id").to_pylist() == table.column("task_id").to_pylist()


def test_results_mark_diverged_trials(finished_study):
    _, output, _, _ = finished_study
    rows = pq.read_table(output / "results").to_pylist()
    diverged = [r for r in rows if r["learning_rate"] == 100.0]
    adam = [r for r in rows if r["optimizer"] == "adam"]

    assert len(diverged) == 2
    assert all(r["status"] == "diverged" for r in diverged)
    assert all(r["steps_run"] < STEPS for r in diverged)
    assert all(r["steps_to_threshold"] is None for r in diverged)
    assert all(r["status"] == "succeeded" for r in rows if r["learning_rate"] != 100.0)
    assert all(r["batch_size"] == 4 for r in adam)
    assert all(r["steps_to_threshold"] is not None for r in adam)


def test_convergence_row_per_step(finished_study):
    _, output, _, _ = finished_study
    convergence = pq.read_table(output / "convergence")
    results = pq.read_table(output / "results")

    assert convergence.schema.equals(optimizer_study.CONVERGENCE_SCHEMA)
    assert convergence.num_rows == sum(results.column("steps_run").to_pylist())
    steps = sorted(r["step"] for r in convergence.to_pylist() if r["trial_id"] == results.column("trial_id")[0].as_py())
    assert steps == list(range(1, results.column("steps_run")[0].as_py() + 1))


@pytest.mark.parametrize("relative", [optimizer_study.LOSS_PLOT, optimizer_study.LEARNING_RATE_PLOT])
def test_plot_decodes_as_png(finished_study, relative):
    _, output, _, _ = finished_study

    with Image.open(output / relative) as image:
        assert image.format == "PNG"
        image.load()
        assert image.width > 400


def test_final_losses_table_printed(finished_study):
    _, _, _, printed = finished_study
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("optimizer "))
    rows = lines[header + 1:header + 1 + TRIALS]

    assert lines[header].split()[:5] == ["optimizer", "learning_rate", "batch", "seed", "final_loss"]
    assert [row.split()[0] for row in rows] == ["gd", "gd", "gd", "gd", "adam", "adam"]
    assert sum(row.endswith("diverged") for row in rows) == 2


def test_rerun_skips_finished_trials(finished_study, caplog):
    manifest, output, _, _ = finished_study

    with caplog.at_level(logging.INFO, logger="jobs.optimizer_study"):
        status = optimizer_study.main([str(manifest)])

    assert status == 0
    assert f"{TRIALS} already finished, 0 to run" in caplog.text
    assert "nothing to run" in caplog.text
    assert pq.read_table(output / "results").num_rows == TRIALS
    assert OutputStore(str(output), optimizer_study.TABLES).list_files("results/_pending") == []


def test_trial_ids_deterministic(tmp_path):
    manifest = write_manifest(tmp_path, TINY_MANIFEST)
    _, first = optimizer_study.load_manifest(manifest)
    _, second = optimizer_study.load_manifest(manifest)
    other_seed = write_manifest(tmp_path, TINY_MANIFEST.replace("[1, 2]", "[1, 3]"), "other.yaml")
    _, changed = optimizer_study.load_manifest(other_seed)

    assert [t.trial_id for t in first] == [t.trial_id for t in second]
    assert len({t.trial_id for t in first} & {t.trial_id for t in changed}) == TRIALS // 2


def test_full_batch_size_same_trial_as_full(tmp_path):
    named = write_manifest(tmp_path, "optimizers:\n  - name: gd\n    batch_size: full\n", "named.yaml")
    counted = write_manifest(tmp_path, "optimizers:\n  - name: gd\n    batch_size: 2000\n", "counted.yaml")

    assert optimizer_study.load_manifest(named)[1] == optimizer_study.load_manifest(counted)[1]


def test_output_defaults_beside_manifest(tmp_path):
    (tmp_path / "manifests").mkdir()
    manifest = write_manifest(tmp_path / "manifests", "optimizers:\n  - name: sgd\n")
    loaded, trials = optimizer_study.load_manifest(manifest)

    assert loaded.output == str(tmp_path / "outputs" / "study")
    assert len(trials) == 1
    assert trials[0].hyperparameters["batch_size"] == 1
    assert trials[0].steps == 300


def test_bad_manifest_lists_every_problem(tmp_path):
    manifest = write_manifest(tmp_path, """\
steps: 0
iterations: 5
optimizers:
  - name: rmsprop
  - name: adam
    learning_rate: -1.0
    momentum: 0.9
  - name: sgd
    batch_size: [half, 0]
""")

    with pytest.raises(ManifestError) as raised:
        optimizer_study.load_manifest(manifest)
    message = str(raised.value)

    assert "7 problem(s)" in message
    assert "steps: Input should be greater than or equal to 1" in message
    assert "iterations: unknown field; valid fields: output, steps, seeds, loss_threshold, optimizers" in message
    assert "optimizers[0].name: unknown optimizer 'rmsprop'" in message
    assert "optimizers[1].learning_rate: must be in (0, inf), got -1.0" in message
    assert "optimizers[2].batch_size: batch_size must be 'full' or an integer in [1, 2000], got 0" in message


def test_bad_hyperparameters_named_with_location(tmp_path):
    manifest = write_manifest(tmp_path, """\
optimizers:
  - name: rmsprop
  - name: adam
    learning_rate: -1.0
    momentum: 0.9
  - name: sgd
    batch_size: [half, 0]
""")

    with pytest.raises(ManifestError) as raised:
        optimizer_study.load_manifest(manifest)
    message = str(raised.value)

    assert "5 problem(s)" in message
    assert "optimizers[0].name: unknown optimizer 'rmsprop'; valid optimizers: gd, sgd, adagrad, adam" in message
    assert "optimizers[1].learning_rate: must be in (0, inf), got -1.0" in message
    assert "optimizers[1].momentum: unknown field for adam; valid fields: name, learning_rate" in message
    assert "optimizers[2].batch_size: batch_size must be 'full' or an integer in [1, 2000], got 'half'" in message
    assert "optimizers[2].batch_size: batch_size must be 'full' or an integer in [1, 2000], got 0" in message


def test_bad_manifest_exits_two(tmp_path, caplog):
    manifest = write_manifest(tmp_path, "optimizers: []\n")

    with caplog.at_level(logging.ERROR, logger="jobs.optimizer_study"):
        status = optimizer_study.main([str(manifest)])

    assert status == 2
    assert "optimizers: List should have at least 1 item" in caplog.text
