"""Connecting a driver to Ray: the cluster in RAY_ADDRESS, else a local Ray on loopback."""

import logging
import os

import ray


def init_ray() -> None:
    """Connect to the cluster named by RAY_ADDRESS (as `ray job submit` sets it), else start a local Ray.

    The local Ray binds to 127.0.0.1 (see jobs/__init__.py) and runs no dashboard.
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING, _node_ip_address="127.0.0.1")
    logging.getLogger("ray").setLevel(logging.WARNING)
    # Drivers log their own progress; Ray Data's bars would repeat it every few seconds.
    ray.data.DataContext.get_current().enable_progress_bars = False


def cluster_resources() -> dict:
    """Return the cluster's total resources (CPU, GPU, memory in bytes), without per-node entries."""
    return {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
