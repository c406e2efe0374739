"""The batch job's manifest: schema, validation and expansion into tasks.

A manifest is YAML. Defaults come from `stylecore` (image size, loss and loop
settings, optimizer hyperparameters) so that they live in one place. Every
problem found is reported at once in one `ManifestError`, each line naming
its location, for example `pairs[1].style: file not found: ...`.
"""

import dataclasses
import hashlib
import itertools
import json
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import pydantic
import yaml

from stylecore import optim
from stylecore.images import DEFAULT_MAX_SIZE_PX
from stylecore.transfer import TransferSettings
from stylecore.weights import WEIGHT_SOURCES

_DEFAULTS = TransferSettings()

# `pkg://PACKAGE/PATH` names a file shipped inside an installed Python
# package, such as the sample photos in scikit-image's wheel.
PACKAGE_SCHEME = "pkg://"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists every problem found."""


class PairSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    content: str | list[str]
    style: str | list[str]


class OptimizerSpec(pydantic.BaseModel):
    """One optimizer and its hyperparameter grid: a list value expands as a Cartesian product."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str


class Manifest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    output: str
    weights: str = "auto"
    image_size: int = pydantic.Field(DEFAULT_MAX_SIZE_PX, ge=32, le=4096)
    iterations: int = pydantic.Field(_DEFAULTS.iterations, ge=1)
    seed: int = _DEFAULTS.seed
    content_weight: float = pydantic.Field(_DEFAULTS.content_weight, ge=0)
    style_weight: float = pydantic.Field(_DEFAULTS.style_weight, ge=0)
    pairs: list[PairSpec] = pydantic.Field(min_length=1)
    optimizers: list[OptimizerSpec] = pydantic.Field(min_length=1)


@dataclasses.dataclass(frozen=True)
class Task:
    """One stylization: a content/style pair with one optimizer configuration."""

    task_id: str
    content: str
    style: str
    content_sha256: str
    style_sha256: str
    optimizer: str
    hyperparameters: str  # JSON object, keys sorted
    image_size: int
    iterations: int
    seed: int
    content_weight: float
    style_weight: float


def load_manifest(path: str | Path) -> tuple[Manifest, list[Task]]:
    """Read, validate and expand a manifest file; raises ManifestError listing every problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ManifestError(f"{path}: cannot read manifest ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping of fields at the top level, got {type(raw).__name__}")

    try:
        manifest = Manifest.model_validate(raw)
    except pydantic.ValidationError as error:
        raise ManifestError(_format_errors(path, [(_location(e["loc"]), e["msg"]) for e in error.errors()])) from None

    problems = []
    if manifest.weights not in WEIGHT_SOURCES:
        problems.append(("weights", f"unknown source {manifest.weights!r}; valid sources: {', '.join(WEIGHT_SOURCES)}"))
    grids = _expand_optimizers(manifest.optimizers, problems)
    pairs = _expand_pairs(manifest.pairs, path.parent, problems)
    if problems:
        raise ManifestError(_format_errors(path, problems))

    manifest = manifest.model_copy(update={"output": resolve_output(manifest.output, path.parent)})
    return manifest, _make_tasks(manifest, pairs, grids)


def resolve_output(output: str, base: Path) -> str:
    """Resolve a relative local output folder against `base`; URIs are kept as they are."""
    if "://" in output:
        return output
    return str((base / output).resolve())


def _location(loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in ("str", "list[str]"):  # pydantic's union member names
            text += f".{part}" if text else str(part)
    return text


def _format_errors(path, problems) -> str:
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
        axes = {}
        for key, value in (spec.model_extra or {}).items():
            if key not in defaults:
                problems.append((f"{where}.{key}", f"unknown field for {spec.name}; valid fields: name, {', '.join(defaults)}"))
                continue
            values = value if isinstance(value, list) else [value]
            if not values:
                problems.append((f"{where}.{key}", "empty list; give at least one value"))
            for item in values:
                message = optim.check_hyperparameter(key, item)
                if message:
                    problems.append((f"{where}.{key}", message))
            axes[key] = values

        for combination in itertools.product(*axes.values()):
            grids.append((spec.name, {**defaults, **dict(zip(axes, combination))}))
    return grids


def _expand_pairs(specs, base: Path, problems) -> list[tuple[str, str]]:
    pairs = []
    for index, spec in enumerate(specs):
        contents = _resolve_images(spec.content, base, f"pairs[{index}].content", problems)
        styles = _resolve_images(spec.style, base, f"pairs[{index}].style", problems)
        pairs += itertools.product(contents, styles)
    return pairs


def _resolve_images(value, base: Path, where: str, problems) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        problems.append((where, "empty list; give at least one image"))
    resolved = []
    for position, item in enumerate(items):
        location = f"{where}[{position}]" if isinstance(value, list) else where
        path = resolve_image_path(item, base)
        if path is None:
            problems.append((location, f"package not installed for {item!r}; install it or use a file path"))
        elif not path.is_file():
            problems.append((location, f"file not found: {path}"))
        else:
            resolved.append(str(path))
    return resolved


def resolve_image_path(source: str, base: Path) -> Path | None:
    """Resolve `pkg://PACKAGE/PATH` or a path relative to `base`; None when the package is missing."""
    if source.startswith(PACKAGE_SCHEME):
        package, _, inner = source[len(PACKAGE_SCHEME):].partition("/")
        spec = importlib_util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(spec.submodule_search_locations[0]) / inner
    return (base / source).resolve()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _make_tasks(manifest: Manifest, pairs, grids) -> list[Task]:
    hashes = {path: file_sha256(path) for pair in pairs for path in pair}
    tasks = {}
    for (content, style), (name, hyperparameters) in itertools.product(pairs, grids):
        settings: dict[str, Any] = {
            "weights": manifest.weights,
            "image_size": manifest.image_size,
            "iterations": manifest.iterations,
            "seed": manifest.seed,
            "content_weight": manifest.content_weight,
            "style_weight": manifest.style_weight,
            "optimizer": name,
            "hyperparameters": {k: float(v) for k, v in sorted(hyperparameters.items())},
        }
        # The id depends on the image bytes, not their names: renaming a file
        # redoes nothing, and changing a setting redoes only the tasks it affects.
        key = json.dumps({"content": hashes[content], "style": hashes[style], **settings}, sort_keys=True)
        task_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        tasks[task_id] = Task(
            task_id=task_id,
            content=content,
            style=style,
            content_sha256=hashes[content],
            style_sha256=hashes[style],
            optimizer=name,
            hyperparameters=json.dumps(settings["hyperparameters"], sort_keys=True),
            image_size=manifest.image_size,
            iterations=manifest.iterations,
            seed=manifest.seed,
            content_weight=manifest.content_weight,
            style_weight=manifest.style_weight,
        )
    return list(tasks.values())
