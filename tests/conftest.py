"""Shared fixtures: tiny seeded images, a VGG19 with random weights, a local Ray."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keep every Ray the tests start on loopback (Ray reads this when imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import pytest
from PIL import Image

SMALL_SIZE_PX = 32


@pytest.fixture(scope="session")
def random_weights():
    from stylecore.weights import random_weights

    return random_weights(seed=0)


@pytest.fixture(scope="session")
def extractor(random_weights):
    from stylecore.features import FeatureExtractor

    return FeatureExtractor(random_weights)


def make_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth seeded RGB image, uint8 height x width x 3."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y + rng.uniform())) for _ in range(3)]
    return np.clip(127.5 + 127.5 * np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


@pytest.fixture
def image_files(tmp_path):
    """Two content and two style PNGs of 48 x 40 pixels; returns (contents, styles) as path lists."""
    contents, styles = [], []
    for index in range(2):
        for kind, target, seed in (("content", contents, index), ("style", styles, 10 + index)):
            path = tmp_path / f"{kind}_{index}.png"
            Image.fromarray(make_rgb(40, 48, seed)).save(path)
            target.append(path)
    return contents, styles


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs on loopback, shut down after the module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    yield ray
    ray.shutdown()
