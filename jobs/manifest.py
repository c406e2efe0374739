"""The batch job's manifest: schema, validation and expansion into tasks.

A manifest is YAML. Defaults come from `stylecore` (image size, loss and loop
settings, optimizer hyperparameters) so that they live in one place. Every
problem found is reported at once in one `ManifestError`, each line naming
its location, for example `pairs[1].style: file not found: ...`.
"""

import dataclasses
import fnmatch
import glob
import hashlib
import itertools
import json
import posixpath
import typing
from importlib import util as importlib_util
from pathlib import Path

import pyarrow.fs as pafs
import pydantic
import yaml

from stylecore import losses, optim
from stylecore.features import PRECISIONS, VGG19_LAYER_NAMES
from stylecore.images import DEFAULT_MAX_SIZE_PX
from stylecore.transfer import SettingsError, TransferSettings
from stylecore.weights import WEIGHT_SOURCES

SETTINGS_FIELDS = {field.name: field for field in dataclasses.fields(TransferSettings)}
GLOB_CHARACTERS = "*?["
OUTPUT_SCHEMES = ("file", "s3", "gs")

# `pkg://PACKAGE/PATH` names a file shipped inside an installed Python
# package, such as the sample photos in scikit-image's wheel.
PACKAGE_SCHEME = "pkg://"
# Longer side of content and style images, pixels.
IMAGE_SIZE_RANGE_PX = (32, 4096)


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists every problem found."""


def _schema_type(annotation):
    """The pydantic type of a TransferSettings field: YAML gives lists where the dataclass stores tuples."""
    if typing.get_origin(annotation) is tuple:
        return list[typing.get_args(annotation)[0]]
    return annotation


# Loss and loop settings: every TransferSettings field, with its default at
# the top level of the manifest and as an optional override in each pair.
_SETTINGS_SCHEMA = {
    name: (_schema_type(f.type), list(f.default) if isinstance(f.default, tuple) else f.default)
    for name, f in SETTINGS_FIELDS.items()
}
_OVERRIDES_SCHEMA = {name: (_schema_type(f.type) | None, None) for name, f in SETTINGS_FIELDS.items()}

PairSpec = pydantic.create_model(
    "PairSpec",
    __config__=pydantic.ConfigDict(extra="forbid"),
    content=(str | list[str], ...),
    style=(str | list[str], ...),
    image_size=(int | None, pydantic.Field(None, ge=IMAGE_SIZE_RANGE_PX[0], le=IMAGE_SIZE_RANGE_PX[1])),
    **_OVERRIDES_SCHEMA,
)


class OptimizerSpec(pydantic.BaseModel):
    """One optimizer and its hyperparameter grid: a list value expands as a Cartesian product."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str


Manifest = pydantic.create_model(
    "Manifest",
    __config__=pydantic.ConfigDict(extra="forbid"),
    output=(str, ...),
    weights=(str, "auto"),
    precision=(str, "auto"),  # of the VGG19 passes: auto, float32 or bfloat16
    image_size=(int, pydantic.Field(DEFAULT_MAX_SIZE_PX, ge=IMAGE_SIZE_RANGE_PX[0], le=IMAGE_SIZE_RANGE_PX[1])),
    pairs=(list[PairSpec], pydantic.Field(min_length=1)),
    optimizers=(list[OptimizerSpec], pydantic.Field(min_length=1)),
    **_SETTINGS_SCHEMA,
)


@dataclasses.dataclass(frozen=True)
class Task:
    """One stylization: a content/style pair with one optimizer configuration."""

    task_id: str
    content: str  # local path or URI
    style: str
    content_sha256: str
    style_sha256: str
    optimizer: str
    hyperparameters: str  # JSON object, keys sorted
    image_size: int  # longer side, pixels
    weights: str
    settings: str  # JSON object of every TransferSettings field

    def transfer_settings(self) -> TransferSettings:
        values = json.loads(self.settings)
        return TransferSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_manifest(path: str | Path) -> tuple[pydantic.BaseModel, list[Task]]:
    """Read, validate and expand a manifest file; raises ManifestError listing every problem."""
    path = Path(path)
    raw = read_yaml_mapping(path)

    try:
        manifest = Manifest.model_validate(raw)
    except pydantic.ValidationError as error:
        raise ManifestError(format_errors(path, [_describe_error(e) for e in error.errors()])) from None

    problems = []
    if manifest.precision not in PRECISIONS:
        problems.append(("precision", f"unknown precision {manifest.precision!r}; valid: {', '.join(PRECISIONS)}"))
    if manifest.weights not in WEIGHT_SOURCES and not manifest.weights.endswith(".h5"):
        problems.append(("weights", f"unknown source {manifest.weights!r}; valid sources: "
                                    f"{', '.join(WEIGHT_SOURCES)}, or a path or URI of Keras' VGG19 .h5 file"))
    scheme = manifest.output.split("://", 1)[0] if "://" in manifest.output else None
    if scheme is not None and scheme not in OUTPUT_SCHEMES:
        # Only the scheme is checked here: opening an object store would contact it before the run.
        problems.append(("output", f"unsupported URI scheme {scheme!r} in {manifest.output!r}; "
                                   f"use a local path or one of {', '.join(s + '://' for s in OUTPUT_SCHEMES)}"))
    grids = _expand_optimizers(manifest.optimizers, problems)
    pairs = _expand_pairs(manifest, path.parent, problems)
    if problems:
        raise ManifestError(format_errors(path, problems))

    pairs_absolute = [spec.model_copy(update={"content": _absolute(spec.content, path.parent),
                                              "style": _absolute(spec.style, path.parent)})
                      for spec in manifest.pairs]
    manifest = manifest.model_copy(update={"output": resolve_output(manifest.output, path.parent),
                                           "pairs": pairs_absolute})
    return manifest, _make_tasks(manifest, pairs, grids)


def _absolute(value, base: Path):
    """Make local relative sources absolute, so that the resolved manifest runs from any folder."""
    if isinstance(value, list):
        return [_absolute(item, base) for item in value]
    if "://" in value or Path(value).is_absolute():
        return value
    return str(base.resolve() / value)


def read_yaml_mapping(path: Path) -> dict:
    """Read a YAML file with the safe loader; raises ManifestError unless it is a mapping."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ManifestError(f"{path}: cannot read manifest ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping of fields at the top level, got {type(raw).__name__}")
    return raw


def resolve_output(output: str, base: Path) -> str:
    """Resolve a relative local output folder against `base`; URIs are kept as they are."""
    if "://" in output:
        return output
    return str((base / output).resolve())


def error_location(loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in ("str", "list[str]"):  # pydantic's union member names
            text += f".{part}" if text else str(part)
    return text


def _describe_error(error: dict) -> tuple[str, str]:
    location = error_location(error["loc"])
    if error["type"] == "extra_forbidden":
        parent = location.rpartition(".")[0] if "." in location else ""
        valid = PairSpec.model_fields if parent.startswith("pairs[") else Manifest.model_fields
        return location, f"unknown field; valid fields: {', '.join(valid)}"
    return location, error["msg"]


def format_errors(path, problems) -> str:
    lines = [f"{path}: {len(problems)} problem(s) in the manifest:"]
    lines += [f"  {location}: {message}" for location, message in problems]
    return "\n".join(lines)


def _expand_optimizers(specs, problems) -> list[tuple[str, dict]]:
    grids = []
    for index, spec in enumerate(specs):
        where = f"optimizers[{index}]"
        if spec.name not in optim.OPTIMIZERS:
            problems.append((f"{where}.name", f"unknown optimizer {spec.name!r}; valid optimizers: {', '.join(optim.OPTIMIZERS)}"))
            continue

        defaults = optim.hyperparameter_defaults(spec.name)
        grids += [(spec.name, point) for point in expand_grid(spec, defaults, where, optim.check_hyperparameter,
                                                              problems)]
    return grids


def expand_grid(spec, defaults: dict, where: str, check, problems) -> list[dict]:
    """Return every point of one optimizer entry's grid: list values expand as a Cartesian product.

    Fields missing from `defaults` and values that `check(key, value)`
    rejects with a message are appended to `problems` at `where`.
    """
    axes = {}
    for key, value in (spec.model_extra or {}).items():
        if key not in defaults:
            problems.append((f"{where}.{key}", f"unknown field for {spec.name}; valid fields: name, {', '.join(defaults)}"))
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            problems.append((f"{where}.{key}", "empty list; give at least one value"))
        for item in values:
            message = check(key, item)
            if message:
                problems.append((f"{where}.{key}", message))
        axes[key] = values
    return [{**defaults, **dict(zip(axes, combination))} for combination in itertools.product(*axes.values())]


def _expand_pairs(manifest, base: Path, problems) -> list[tuple[str, str, int, TransferSettings]]:
    """Return (content, style, image size, settings) for every content × style of every pair."""
    defaults = {name: getattr(manifest, name) for name in SETTINGS_FIELDS}
    expanded = []
    for index, spec in enumerate(manifest.pairs):
        where = f"pairs[{index}]"
        overrides = {name: getattr(spec, name) for name in SETTINGS_FIELDS if getattr(spec, name) is not None}
        values = {**defaults, **overrides}
        if "style_layer_weights" not in manifest.model_fields_set and "style_layer_weights" not in overrides:
            # Weights the manifest does not give follow the number of style layers.
            values["style_layer_weights"] = list(losses.default_style_layer_weights(len(values["style_layers"])))
        settings = _check_settings(values, where if overrides else None, problems)
        contents = _resolve_images(spec.content, base, f"{where}.content", problems)
        styles = _resolve_images(spec.style, base, f"{where}.style", problems)
        image_size = spec.image_size or manifest.image_size
        if settings is not None and settings.coarse_sizes and settings.coarse_sizes[-1] >= image_size:
            field = f"{where}.coarse_sizes" if "coarse_sizes" in overrides or spec.image_size else "coarse_sizes"
            problems.append((field, f"{list(settings.coarse_sizes)} reaches the image size {image_size} px; "
                                    "give coarse sizes below it"))
            settings = None
        if settings is not None:
            expanded += [(c, s, image_size, settings) for c, s in itertools.product(contents, styles)]
    return expanded


def _check_settings(values: dict, where: str | None, problems) -> TransferSettings | None:
    """Build TransferSettings from manifest values; a problem is located at the pair that overrides, else top level."""
    def report(field, message):
        problems.append((f"{where}.{field}" if where else field, message))

    count = len(problems)
    for field in ("content_layers", "style_layers"):
        unknown = [name for name in values[field] if name not in VGG19_LAYER_NAMES]
        if unknown:
            report(field, f"unknown VGG19 layer {', '.join(unknown)}; valid layers: {', '.join(VGG19_LAYER_NAMES)}")
    if not values["content_layers"]:
        report("content_layers", "empty list; give at least one layer")
    if len(values["style_layer_weights"]) != len(values["style_layers"]):
        report("style_layer_weights", f"{len(values['style_layer_weights'])} weights for "
               f"{len(values['style_layers'])} style layers; give one weight per style layer")
    for field in ("content_weight", "style_weight"):
        if values[field] < 0:
            report(field, f"must be at least 0, got {values[field]!r}")
    if len(problems) > count:
        return None
    try:
        return TransferSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except SettingsError as error:
        for field, message in error.problems:
            report(field, message.removeprefix(f"{field} "))
        return None


def _resolve_images(value, base: Path, where: str, problems) -> list[str]:
    """Resolve paths, URIs, `pkg://` names and glob patterns into sources that exist."""
    items = value if isinstance(value, list) else [value]
    if not items:
        problems.append((where, "empty list; give at least one image"))
    resolved = []
    for position, item in enumerate(items):
        location = f"{where}[{position}]" if isinstance(value, list) else where
        try:
            resolved += resolve_image_source(item, base)
        except (FileNotFoundError, IsADirectoryError, ValueError, OSError) as error:
            problems.append((location, str(error)))
    return resolved


def resolve_image_source(source: str, base: Path) -> list[str]:
    """Return the image sources `source` names: one file, or every match of a glob pattern, sorted.

    Local paths resolve against `base`; `pkg://PACKAGE/PATH` names a file in
    an installed package; other URIs go through `pyarrow.fs`.
    """
    if source.startswith(PACKAGE_SCHEME):
        package, _, inner = source[len(PACKAGE_SCHEME):].partition("/")
        spec = importlib_util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"package {package!r} not installed for {source!r}; install it or use a file path")
        source = str(Path(spec.submodule_search_locations[0]) / inner)
    elif "://" in source:
        return _resolve_uri(source)

    path = (base / source).resolve() if not Path(source).is_absolute() else Path(source)
    if any(c in source for c in GLOB_CHARACTERS):
        matches = sorted(p for p in glob.glob(str(path)) if Path(p).is_file())
        if not matches:
            raise FileNotFoundError(f"pattern matches no file: {path}")
        return matches
    if path.is_dir():
        raise IsADirectoryError(f"is a directory, not an image file: {path}; use a glob such as {path}/*.jpg")
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return [str(path)]


def _resolve_uri(uri: str) -> list[str]:
    scheme = uri.split("://", 1)[0]
    # from_uri parses glob characters as part of the path, so it gets a neutral copy.
    fs, _ = pafs.FileSystem.from_uri(uri.translate({ord(c): "x" for c in GLOB_CHARACTERS}))
    location = uri.split("://", 1)[1] if scheme != "file" else uri[len("file://"):]
    if not any(c in location for c in GLOB_CHARACTERS):
        info = fs.get_file_info(location)
        if info.type == pafs.FileType.Directory:
            raise IsADirectoryError(f"is a directory, not an image file: {uri}")
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"file not found: {uri}")
        return [uri]

    folder, pattern = posixpath.split(location)
    if any(c in folder for c in GLOB_CHARACTERS):
        raise ValueError(f"glob characters are allowed only in the file name of a URI, got {uri}")
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    prefix = uri[: len(uri) - len(location)]
    matches = sorted(prefix + i.path.lstrip("/") if scheme != "file" else f"file://{i.path}"
                     for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(posixpath.basename(i.path), pattern))
    if not matches:
        raise FileNotFoundError(f"pattern matches no file: {uri}")
    return matches


def source_sha256(source: str) -> str:
    """sha256 of the bytes of a local file or a URI."""
    digest = hashlib.sha256()
    if "://" in source:
        fs, location = pafs.FileSystem.from_uri(source)
        stream = fs.open_input_stream(location)
    else:
        stream = open(source, "rb")
    with stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _make_tasks(manifest, pairs, grids) -> list[Task]:
    hashes = {}
    for content, style, _, _ in pairs:
        for source in (content, style):
            if source not in hashes:
                hashes[source] = source_sha256(source)

    tasks = {}
    for (content, style, image_size, settings), (name, hyperparameters) in itertools.product(pairs, grids):
        settings_json = json.dumps(dataclasses.asdict(settings), sort_keys=True)
        hyperparameters_json = json.dumps({k: float(v) for k, v in sorted(hyperparameters.items())}, sort_keys=True)
        # The id depends on the image bytes, not their names: renaming a file
        # redoes nothing, and changing a setting redoes only the tasks it affects.
        fields = {"content": hashes[content], "style": hashes[style], "weights": manifest.weights,
                  "image_size": image_size, "optimizer": name, "hyperparameters": hyperparameters_json,
                  "settings": settings_json}
        if manifest.precision != "auto":  # so that ids from before the precision field stay the same
            fields["precision"] = manifest.precision
        key = json.dumps(fields, sort_keys=True)
        task_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        tasks[task_id] = Task(
            task_id=task_id,
            content=content,
            style=style,
            content_sha256=hashes[content],
            style_sha256=hashes[style],
            optimizer=name,
            hyperparameters=hyperparameters_json,
            image_size=image_size,
            weights=manifest.weights,
            settings=settings_json,
        )
    return list(tasks.values())
