"""The job submitted with `ray job submit` to a Ray head started with `ray start`, all on loopback."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SUBMIT_TIMEOUT_S = 300

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 in its own temp folder; yields the job API address, then stops only its processes."""
    # Ray's own socket paths must stay short, so not under pytest's tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="ray-it-", dir="/tmp")
    dashboard_port = free_port()
    # The job's `python` must be this virtual environment's; loopback only; Ray's default token authentication.
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [BIN / "ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--num-cpus=2",
         # Ports of their own, so that another Ray on this machine cannot hold them.
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
         f"--ray-client-server-port={free_port()}",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        check=True, env=env, capture_output=True, timeout=180,
    )
    try:
        yield f"http://127.0.0.1:{dashboard_port}", env
    finally:
        _stop_processes_using(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_processes_using(temp_dir: str) -> None:
    # `ray stop` would also stop every other Ray on this machine.
    mine = [p for p in psutil.process_iter(["cmdline"]) if any(temp_dir in part for part in p.info["cmdline"] or [])]
    for process in mine:
        process.terminate()
    _, alive = psutil.wait_procs(mine, timeout=10)
    for process in alive:
        process.kill()


def submit(address: str, env: dict, manifest: Path) -> subprocess.CompletedProcess:
    # The head may need a few seconds before its job agent accepts submissions.
    deadline = time.monotonic() + 60
    while True:
        completed = subprocess.run(
            [BIN / "ray", "job", "submit", "--address", address, "--working-dir", str(REPO),
             "--", "python", "-m", "jobs.stylize", str(manifest)],
            env=env, capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S, cwd=REPO,
        )
        if "No available agent" not in completed.stderr + completed.stdout or time.monotonic() > deadline:
            return completed
        time.sleep(3)


def test_submitted_job_writes_outputs_and_rerun_redoes_nothing(ray_head, tmp_path, image_files):
    address, env = ray_head
    contents, styles = image_files
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: 32
        iterations: 2
        pairs:
          - content: [{contents[0].name}, {contents[1].name}]
            style: {styles[0].name}
        optimizers:
          - name: adam
    """))

    first = submit(address, env, manifest)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 task(s), 0 already finished, 2 to run" in first.stdout

    results = pq.read_table(tmp_path / "out" / "results")
    assert results.num_rows == 2
    assert set(results.column("status").to_pylist()) == {"succeeded"}
    assert pq.read_table(tmp_path / "out" / "convergence").num_rows == 4

    second = submit(address, env, manifest)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 task(s), 2 already finished, 0 to run" in second.stdout
    assert pq.read_table(tmp_path / "out" / "results").num_rows == 2
