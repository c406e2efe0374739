"""Output faults: an object store that cannot be reached, and an output folder that turns read-only mid-run."""

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs import verify
from jobs.outputs import OutputStore

pytestmark = pytest.mark.faults

RUN_TIMEOUT_S = 300
BUCKET = "stylecore-test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_manifest(folder: Path, image_files, output: str, tasks: int = 2) -> Path:
    contents, styles = image_files
    path = folder / "manifest.yaml"
    rates = ", ".join(str(float(r)) for r in range(1, tasks + 1))
    path.write_text(textwrap.dedent(f"""
        output: "{output}"
        weights: random
        image_size: 64
        iterations: 30
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
        optimizers:
          - name: adam
            learning_rate: [{rates}]
    """))
    return path


def job_env(**extra) -> dict:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def run_job(manifest: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.stylize", str(manifest)], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, env=env)


def test_unreachable_object_store_then_rerun(tmp_path, image_files):
    from moto.server import ThreadedMotoServer

    port = free_port()  # nothing listens here until the server starts below
    output = f"s3://{BUCKET}/run?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
    env = job_env(**credentials)
    manifest = write_manifest(tmp_path, image_files, output)

    first = run_job(manifest, env)
    assert first.returncode == 3, first.stderr[-3000:]
    assert "Run stopped:" in first.stderr
    assert "Could not connect" in first.stderr
    assert "rerun the same manifest" in first.stderr
    assert "Traceback" not in first.stderr

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        os.environ.update(credentials)
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        second = run_job(manifest, env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert verify.verify(output)[0] == []
        results = OutputStore(output).read_table("results", include_pending=False)
        assert results.num_rows == 2
        assert all(uri.startswith(f"s3://{BUCKET}/run/images/") and uri.endswith(f"?endpoint_override=127.0.0.1:{port}"
                   "&scheme=http&region=us-east-1") for uri in results.column("image_uri").to_pylist())
    finally:
        server.stop()
        for key in credentials:
            os.environ.pop(key, None)


def make_tree_immutable(root: Path, immutable: bool) -> None:
    subprocess.run(["chattr", "-R", "+i" if immutable else "-i", str(root)], check=True, capture_output=True)


def immutable_supported(folder: Path) -> bool:
    probe = folder / "probe"
    probe.mkdir()
    try:
        make_tree_immutable(probe, True)
    except (OSError, subprocess.CalledProcessError):
        return False
    try:
        (probe / "file").touch()
        return False
    except PermissionError:
        return True
    finally:
        make_tree_immutable(probe, False)


def test_output_read_only_mid_run_then_rerun(tmp_path, image_files):
    # Root ignores file permissions, so the folder is made immutable (chattr +i) instead of chmod'ed.
    if shutil.which("chattr") is None or not immutable_supported(tmp_path):
        pytest.skip("chattr +i is not available here, so the output folder cannot be made read-only")
    output = tmp_path / "out"
    manifest = write_manifest(tmp_path, image_files, str(output), tasks=4)

    log = (tmp_path / "job.log").open("w")
    # One task per actor call, so tasks finish one after another and the fault lands mid-run.
    job = subprocess.Popen([sys.executable, "-m", "jobs.stylize", str(manifest), "--max-batch", "1"], stdout=log,
                           stderr=subprocess.STDOUT, env=job_env())
    try:
        deadline = time.monotonic() + 180
        pending = output / "results" / "_pending"
        while not (pending.is_dir() and any(pending.glob("*.parquet"))):
            assert time.monotonic() < deadline, "no task finished in time"
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            time.sleep(0.1)
        make_tree_immutable(output, True)
        status = job.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if job.poll() is None:
            job.kill()
        make_tree_immutable(output, False)

    text = (tmp_path / "job.log").read_text()
    assert status == 3, text[-3000:]
    assert "Run stopped: " in text
    assert "Operation not permitted" in text
    assert not list(output.rglob("*.tmp"))

    rerun = run_job(manifest, job_env())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert verify.verify(str(output))[0] == []
    assert pq.read_table(output / "results").num_rows == 4
