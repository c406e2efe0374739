"""The style-transfer batch job on a local Ray, reading its Parquet outputs back."""

import dataclasses
import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

from jobs import stylize, verify
from jobs.outputs import CONVERGENCE_SCHEMA, RESULTS_SCHEMA, OutputStore

ITERATIONS = 3


def test_job_writes_one_row_per_task_and_iteration(local_ray, tmp_path, image_files):
    contents, styles = image_files
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: 32
        iterations: {ITERATIONS}
        pairs:
          - content: [{contents[0].name}, {contents[1].name}]
            style: {styles[0].name}
        optimizers:
          - name: adam
            learning_rate: [1.0, 4.0]
    """))

    assert stylize.main([str(path)]) == 0

    results = pq.read_table(tmp_path / "out" / "results")
    assert results.schema.equals(RESULTS_SCHEMA)
    assert results.num_rows == 4
    assert set(results.column("status").to_pylist()) == {"succeeded"}
    assert sorted(results.column("learning_rate").to_pylist()) == [1.0, 1.0, 4.0, 4.0]

    convergence = pq.read_table(tmp_path / "out" / "convergence")
    assert convergence.schema.equals(CONVERGENCE_SCHEMA)
    assert convergence.num_rows == 4 * ITERATIONS
    for task_id in results.column("task_id").to_pylist():
        rows = convergence.filter(convergence.column("task_id").to_numpy(zero_copy_only=False) == task_id)
        assert sorted(rows.column("iteration").to_pylist()) == list(range(ITERATIONS))

    for row in results.to_pylist():
        with Image.open(tmp_path / "out" / "images" / f"{row['task_id']}.png") as image:
            assert image.size == (row["width_px"], row["height_px"]) == (32, 27)
            assert image.mode == "RGB"

    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["counts"] == {"succeeded": 4}
    assert run["tasks"] == 4
    assert run["finished_at"] >= run["started_at"]
    assert run["cluster_resources"]["CPU"] == 2
    assert "tensorflow-cpu" in run["versions"] or "tensorflow" in run["versions"]
    resolved = yaml.safe_load((tmp_path / "out" / "manifest.resolved.yaml").read_text())
    assert resolved["output"] == str(tmp_path / "out")
    assert resolved["style_layers"][0] == "block1_conv1"
    assert resolved["pairs"][0]["content"] == [str(contents[0]), str(contents[1])]

    assert verify.verify(str(tmp_path / "out"))[0] == []

    # A rerun finds every task finished and adds nothing.
    assert stylize.main([str(path)]) == 0
    assert pq.read_table(tmp_path / "out" / "results").num_rows == 4
    assert pq.read_table(tmp_path / "out" / "convergence").num_rows == 4 * ITERATIONS


def test_job_bad_image_fails_alone(local_ray, tmp_path, image_files):
    contents, styles = image_files
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: 32
        iterations: {ITERATIONS}
        pairs:
          - content: [{contents[0].name}, broken.png]
            style: {styles[0].name}
        optimizers:
          - name: adam
    """))

    assert stylize.main([str(path)]) == 1

    rows = {r["content"]: r for r in pq.read_table(tmp_path / "out" / "results").to_pylist()}
    assert rows[str(contents[0])]["status"] == "succeeded"
    failed = rows[str(broken)]
    assert failed["status"] == "failed"
    assert "broken.png" in failed["error"]
    assert failed["image_uri"] is None

    # A rerun runs nothing, but still reports the failed task through its exit status.
    assert stylize.main([str(path)]) == 1


def test_job_invalid_manifest_exits_2(tmp_path, caplog):
    path = tmp_path / "manifest.yaml"
    path.write_text("output: out\npairs: []\noptimizers: []\n")
    assert stylize.main([str(path)]) == 2
    assert "pairs: List should have at least 1 item" in caplog.text


def test_verify_detects_tampered_image(local_ray, tmp_path, image_files, capsys):
    contents, styles = image_files
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: 32
        iterations: 2
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
        optimizers:
          - name: adam
    """))
    assert stylize.main([str(path)]) == 0
    assert verify.main([str(tmp_path / "out")]) == 0

    image = next((tmp_path / "out" / "images").glob("*.png"))
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    assert verify.main([str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert "differs from the recorded" in printed
    assert "does not decode" in printed


def test_diverging_task_recorded_and_job_exits_0(local_ray, tmp_path, image_files):
    contents, styles = image_files
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: 32
        iterations: 5
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
        optimizers:
          - name: adam
            learning_rate: [1.0e+6, 1.0]
    """))

    assert stylize.main([str(path)]) == 0

    rows = {r["learning_rate"]: r for r in pq.read_table(tmp_path / "out" / "results").to_pylist()}
    assert rows[1e6]["status"] == "diverged"
    assert rows[1e6]["best_iteration"] == 0
    assert rows[1.0]["status"] == "succeeded"
    with Image.open(tmp_path / "out" / "images" / f"{rows[1e6]['task_id']}.png") as image:
        assert image.size == (32, 27)
    assert verify.verify(str(tmp_path / "out"))[0] == []


def test_coarse_job_records_each_size(local_ray, tmp_path, image_files):
    contents, styles = image_files
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: 48
        iterations: 2
        coarse_sizes: [32]
        coarse_iterations: 3
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
        optimizers:
          - name: adam
            learning_rate: [1.0, 4.0]
    """))

    assert stylize.main([str(path)]) == 0

    results = pq.read_table(tmp_path / "out" / "results").to_pylist()
    assert [r["iterations_run"] for r in results] == [5, 5]
    assert all(r["width_px"] == 48 for r in results)
    convergence = pq.read_table(tmp_path / "out" / "convergence").to_pylist()
    for row in results:
        rows = sorted((r for r in convergence if r["task_id"] == row["task_id"]), key=lambda r: r["iteration"])
        assert [r["iteration"] for r in rows] == list(range(5))
        assert [r["size_px"] for r in rows] == [32, 32, 32, 48, 48]
        assert row["best_iteration"] in (3, 4)
    assert verify.verify(str(tmp_path / "out"))[0] == []


def test_group_tasks_batches_only_shared_pairs(tmp_path, image_files):
    from jobs.manifest import load_manifest

    contents, styles = image_files
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(f"""
        output: out
        image_size: 512
        pairs:
          - content: [{contents[0].name}, {contents[1].name}]
            style: {styles[0].name}
        optimizers:
          - name: adam
            learning_rate: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          - name: lbfgs
    """))
    _, tasks = load_manifest(path)

    groups = stylize.group_tasks(tasks, max_batch=8)

    assert sorted(len(g) for g in groups) == [1, 1, 2, 2, 8, 8]
    for group in groups:
        assert len({(t.content_sha256, t.style_sha256, t.optimizer, t.settings) for t in group}) == 1
    assert all(len(g) == 1 for g in groups if g[0].optimizer == "lbfgs")
    assert sorted(t.task_id for g in groups for t in g) == sorted(t.task_id for t in tasks)
    # 1024 px images fit two to a batch under MAX_BATCH_PIXELS.
    large = [dataclasses.replace(t, image_size=1024) for t in tasks if t.optimizer == "adam"]
    assert max(len(g) for g in stylize.group_tasks(large, max_batch=8)) == 2


def test_output_not_writable_stops_with_exit_3(tmp_path, image_files, caplog):
    contents, styles = image_files
    (tmp_path / "blocker").write_text("a file where the output folder's parent should be")
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(f"""
        output: blocker/out
        weights: random
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
        optimizers:
          - name: adam
    """))

    assert stylize.main([str(path)]) == 3
    assert "Run stopped:" in caplog.text
    assert "blocker" in caplog.text


def test_old_convergence_part_reads_null_size(tmp_path):
    # A part written before convergence rows carried size_px.
    folder = tmp_path / "out" / "convergence"
    folder.mkdir(parents=True)
    old_schema = pa.schema([f for f in CONVERGENCE_SCHEMA if f.name != "size_px"])
    old = pa.table({"task_id": ["a", "a"], "iteration": [0, 1], "total_loss": [2.0, 1.0], "style_loss": [1.5, 0.5],
                    "content_loss": [0.5, 0.5], "tv_loss": [0.0, 0.0], "elapsed_s": [0.1, 0.2]}, schema=old_schema)
    pq.write_table(old, folder / "part-old.parquet")

    table = OutputStore(str(tmp_path / "out")).read_table("convergence")

    assert table.schema.equals(CONVERGENCE_SCHEMA)
    assert table.column("size_px").to_pylist() == [None, None]
    assert table.column("total_loss").to_pylist() == [2.0, 1.0]
