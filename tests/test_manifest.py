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
    assert "colour: unknown field; valid fields: output, weights, precision, image_size, pairs, optimizers" in message


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


def test_globs_and_uris_expand(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: out
        pairs:
          - content: "content_*.png"
            style: file://{styles[0]}
          - content: file://{tmp_path}/content_?.png
            style: {styles[1].name}
        optimizers:
          - name: adam
    """
    _, tasks = load_manifest(write_manifest(tmp_path, body))
    assert sorted((t.content, t.style) for t in tasks) == sorted([
        (str(contents[0]), f"file://{styles[0]}"),
        (str(contents[1]), f"file://{styles[0]}"),
        (f"file://{contents[0]}", str(styles[1])),
        (f"file://{contents[1]}", str(styles[1])),
    ])


def test_glob_matching_nothing_rejected(tmp_path, image_files):
    body = """
        output: out
        pairs:
          - content: "photos/*.jpg"
            style: style_0.png
        optimizers:
          - name: adam
    """
    with pytest.raises(ManifestError, match=r"pairs\[0\].content: pattern matches no file: .*photos/\*.jpg"):
        load_manifest(write_manifest(tmp_path, body))


def test_directory_rejected_with_glob_hint(tmp_path, image_files):
    (tmp_path / "photos").mkdir()
    body = """
        output: out
        pairs:
          - content: photos
            style: style_0.png
        optimizers:
          - name: adam
    """
    with pytest.raises(ManifestError, match="is a directory, not an image file: .*use a glob such as"):
        load_manifest(write_manifest(tmp_path, body))


def test_pair_overrides_loss_settings(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: out
        tv_weight: 0.5
        init: noise
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
          - content: {contents[1].name}
            style: {styles[0].name}
            style_weight: 1.0
            style_layers: [block1_conv1, block2_conv1]
            style_layer_weights: [1, 1]
            image_size: 64
        optimizers:
          - name: adam
    """
    _, tasks = load_manifest(write_manifest(tmp_path, body))
    by_content = {t.content: t for t in tasks}
    plain = by_content[str(contents[0])].transfer_settings()
    overridden = by_content[str(contents[1])].transfer_settings()
    assert (plain.tv_weight, plain.init, plain.style_weight) == (0.5, "noise", 1e-2)
    assert overridden.style_layers == ("block1_conv1", "block2_conv1")
    assert (overridden.tv_weight, overridden.style_weight) == (0.5, 1.0)
    assert by_content[str(contents[1])].image_size == 64


def test_unknown_layer_and_weight_count_rejected(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: out
        content_layers: [block6_conv1]
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
            style_layers: [block1_conv1]
            style_layer_weights: [1, 2]
        optimizers:
          - name: adam
    """
    with pytest.raises(ManifestError) as error:
        load_manifest(write_manifest(tmp_path, body))
    message = str(error.value)
    assert "pairs[0].content_layers: unknown VGG19 layer block6_conv1; valid layers: block1_conv1" in message
    assert "pairs[0].style_layer_weights: 2 weights for 1 style layers" in message


def test_style_layer_weights_follow_layer_count(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: out
        style_layers: [block1_conv1, block2_conv1]
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
          - content: {contents[1].name}
            style: {styles[0].name}
            style_layers: [block1_conv1, block2_conv1, block3_conv1]
        optimizers:
          - name: adam
    """
    _, tasks = load_manifest(write_manifest(tmp_path, body))
    weights = sorted(t.transfer_settings().style_layer_weights for t in tasks)
    assert weights == [(1.0, 2.0), (1.0, 2.0, 3.0)]


def test_same_file_twice_gives_one_task(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: out
        pairs:
          - content: [{contents[0].name}, ./{contents[0].name}]
            style: {styles[0].name}
        optimizers:
          - name: adam
    """
    _, tasks = load_manifest(write_manifest(tmp_path, body))
    assert len(tasks) == 1


def test_unsupported_output_scheme_rejected(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: ftp://archive/out
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
        optimizers:
          - name: adam
    """
    with pytest.raises(ManifestError, match="output: unsupported URI scheme 'ftp'.*file://, s3://, gs://"):
        load_manifest(write_manifest(tmp_path, body))


def test_zero_and_non_numeric_hyperparameters_rejected(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: out
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
        optimizers:
          - name: adam
            learning_rate: 0
          - name: gd
            learning_rate: fast
    """
    with pytest.raises(ManifestError) as error:
        load_manifest(write_manifest(tmp_path, body))
    message = str(error.value)
    assert "optimizers[0].learning_rate: must be in (0, inf), got 0" in message
    assert "optimizers[1].learning_rate: must be a number, got 'fast'" in message


def test_coarse_sizes_checked_against_image_size(tmp_path, image_files):
    contents, styles = image_files
    body = f"""
        output: out
        image_size: 64
        coarse_sizes: [32]
        coarse_iterations: 5
        pairs:
          - content: {contents[0].name}
            style: {styles[0].name}
          - content: {contents[1].name}
            style: {styles[0].name}
            image_size: 32
        optimizers:
          - name: adam
    """
    with pytest.raises(ManifestError, match=r"pairs\[1\]\.coarse_sizes: \[32\] reaches the image size 32 px"):
        load_manifest(write_manifest(tmp_path, body))

    _, tasks = load_manifest(write_manifest(tmp_path, body.replace("image_size: 32", "image_size: 48")))
    settings = [t.transfer_settings() for t in tasks]
    assert [(s.coarse_sizes, s.coarse_iterations) for s in settings] == [((32,), 5), ((32,), 5)]


def test_each_invalid_setting_reported_at_its_field(tmp_path, image_files):
    body = valid_body(*image_files).replace("iterations: 2", "iterations: 2\n        coarse_sizes: [24, 16]\n"
                                                                "        coarse_iterations: 0")

    with pytest.raises(ManifestError) as raised:
        load_manifest(write_manifest(tmp_path, body))

    message = str(raised.value)
    assert "coarse_sizes: must be increasing sizes of at least 16 px, got [24, 16]" in message
    assert "coarse_iterations: must be at least 1, got 0" in message
