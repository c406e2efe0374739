"""Fault injection: SIGKILL of a worker or of the driver mid-run, checked with `stylize verify`."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from jobs import verify

pytestmark = pytest.mark.faults

TASKS = 6
RUN_TIMEOUT_S = 300


@pytest.fixture
def manifest(tmp_path, image_files):
    contents, styles = image_files
    path = tmp_path / "manifest.yaml"
    # 64 px and 40 iterations keep each task running for a second or more, long enough to kill mid-task.
    path.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: 64
        iterations: 40
        pairs:
          - content: [{contents[0].name}, {contents[1].name}]
            style: {styles[0].name}
        optimizers:
          - name: adam
            learning_rate: [1.0, 2.0, 3.0]
    """))
    return path


def start_job(manifest: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "jobs.stylize", str(manifest)], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def finished_pieces(output: Path) -> int:
    folder = output / "results" / "_pending"
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


def actor_processes(driver: subprocess.Popen):
    children = psutil.Process(driver.pid).children(recursive=True)
    return [p for p in children if "StylizeActor" in " ".join(_cmdline(p))]


def _cmdline(process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (its local Ray)."""
    tree = [process.pid, *(p.pid for p in psutil.Process(process.pid).children(recursive=True))]
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


def assert_complete(output: Path) -> list:
    problems, summary = verify.verify(str(output))
    assert problems == []
    results = pq.read_table(output / "results")
    task_ids = results.column("task_id").to_pylist()
    assert len(task_ids) == len(set(task_ids)) == TASKS
    assert set(results.column("status").to_pylist()) == {"succeeded"}
    return task_ids


def test_killed_worker_task_retried(manifest, tmp_path):
    log = tmp_path / "job.log"
    driver = start_job(manifest, log)
    try:
        wait_for(lambda: finished_pieces(tmp_path / "out") >= 1, 180, "the first finished task")
        actors = wait_for(lambda: actor_processes(driver), 30, "the actor process")
        for actor in actors:
            actor.send_signal(signal.SIGKILL)
        assert driver.wait(timeout=RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            kill_session(driver)

    assert_complete(tmp_path / "out")


def test_killed_driver_rerun_keeps_finished_tasks(manifest, tmp_path):
    log = tmp_path / "first.log"
    driver = start_job(manifest, log)
    try:
        wait_for(lambda: finished_pieces(tmp_path / "out") >= 2, 180, "two finished tasks")
    finally:
        kill_session(driver)
    survivors = {p.stem for p in (tmp_path / "out" / "results" / "_pending").glob("*.parquet")}
    assert 2 <= len(survivors) < TASKS

    rerun = subprocess.run([sys.executable, "-m", "jobs.stylize", str(manifest)], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT_S, env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(survivors)} already finished" in rerun.stderr

    task_ids = assert_complete(tmp_path / "out")
    assert survivors <= set(task_ids)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["skipped_as_finished"] == len(survivors)
