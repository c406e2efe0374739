"""Manifest validation and expansion into tasks."""

import textwrap

import pytest

from jobs.manifest import ManifestError, load_manifest


def write_manifest(folder, body: str):
    path = folder / "manifest.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def valid_body(contents, styles, extra=""):
    return f"""
        output: out
        weights: random
        image_size: 32
        iterations: 2
        pairs:
          - content: [{contents[0].name}, {contents[1].name}]
            style: [{styles[0].name}, {styles[1].name}]
        optimizers:
          - name: adam
            learning_rate: [1.0, 5.0]
            beta1: 0.8
        {extra}
    """


def test_pairs_and_grid_expand_to_cross_product(tmp_path, image_files):
    manifest, tasks = load_manifest(write_manifest(tmp_path, valid_body(*image_files)))
    assert len(tasks) == 2 * 2 * 2
    assert manifest.output == str(tmp_path / "out")
    assert {t.hyperparameters for t in tasks} == {
        '{"beta1": 0.8, "beta2": 0.999, "epsilon": 1e-07, "learning_rate": 1.0}',
        '{"beta1": 0.8, "beta2": 0.999, "epsilon": 1e-07, "learning_rate": 5.0}',
    }
    assert len({t.task_id for t in tasks}) == 8


def test_task_id_follows_bytes_not_names(tmp_path, image_files):
    _, before = load_manifest(write_manifest(tmp_path, valid_body(*image_files)))
    contents, styles = image_files
    renamed = contents[0].rename(tmp_path / "renamed.png")
    _, after = load_manifest(write_manifest(tmp_path, valid_body([renamed, contents[1]], styles)))
    assert {t.task_id for t in before} == {t.task_id for t in after}


def test_changed_setting_changes_only_its_tasks(tmp_path, image_files):
    _, before = load_manifest(write_manifest(tmp_path, valid_body(*image_files)))
    body = valid_body(*image_files).replace("learning_rate: [1.0, 5.0]", "learning_rate: [1.0, 6.0]")
    _, after = load_manifest(write_manifest(tmp_path, body))
    assert len({t.task_id for t in before} & {t.task_id for t in after}) == 4


def test_package_images_resolve(tmp_path):
    body = """
        output: out
        pairs:
          - content: pkg://skimage/data/astronaut.png
            style: pkg://skimage/data/ihc.png
        optimizers:
          - name: adam
    """
    _, tasks = load_manifest(write_manifest(tmp_path, body))
    assert tasks[0].content.endswith("skimage/data/astronaut.png")


def test_unknown_top_level_field_rejected(tmp_path, image_files):
    contents, _ = image_files
    body = f"""
        output: out
        weights: imagenet-ish
        colour: blue
        pairs:
          - content: {contents[0].name}
            style: missing.png
        optimizers:
          - name: adam
            learning_rate: -1
            momentum: 0.9
          - name: rmsprop
    """
    with pytest.raises(ManifestError) as error:
        load_manifest(write_manifest(tmp_path, body))
    message = str(error.value)
    assert "colour: Extra inputs are not permitted" in message


def test_semantic_problems_reported_together(tmp_path, image_files):
    contents, _ = image_files
    body = f"""
        output: out
        weights: imagenet-ish
        pairs:
          - content: {contents[0].name}
            style: missing.png
        optimizers:
          - name: adam
            learning_rate: -1
            nesterov: 0.9
          - name: rmsprop
    """
    with pytest.raises(ManifestError) as error:
        load_manifest(write_manifest(tmp_path, body))
    message = str(error.value)
    assert "5 problem(s)" in message
    assert "weights: unknown source 'imagenet-ish'" in message
    assert f"pairs[0].style: file not found: {tmp_path / 'missing.png'}" in message
    assert "optimizers[0].learning_rate: must be in (0, inf), got -1" in message
    assert "optimizers[0].nesterov: unknown field for adam; valid fields: name, learning_rate" in message
    assert "optimizers[1].name: unknown optimizer 'rmsprop'" in message


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text("output: [unclosed\n")
    with pytest.raises(ManifestError, match="manifest.yaml: invalid YAML"):
        load_manifest(path)


def test_empty_pairs_rejected(tmp_path):
    body = """
        output: out
        pairs: []
        optimizers:
          - name: adam
    """
    with pytest.raises(ManifestError, match="pairs: List should have at least 1 item"):
        load_manifest(write_manifest(tmp_path, body))
