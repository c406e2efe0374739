"""The `stylize` command as a user runs it: a real process, real files."""

import subprocess
import sys

from PIL import Image

from jobs import cli

STYLIZE = [sys.executable, "-m", "jobs.cli"]


def run_stylize(*args, timeout_s=300) -> subprocess.CompletedProcess:
    return subprocess.run([*STYLIZE, *args], capture_output=True, text=True, timeout=timeout_s)


def test_one_writes_png_and_summary(tmp_path, image_files):
    contents, styles = image_files
    output = tmp_path / "out.png"
    completed = run_stylize("one", str(contents[0]), str(styles[0]), "-o", str(output), "--weights", "random",
                            "--image-size", "32", "--iterations", "3", "--optimizer", "gd", "--learning-rate", "0.5",
                            "--tv-weight", "0.1", "--init", "noise")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith(f"succeeded: {output} (32 x 27 px), 3 iterations")
    assert "s/iteration" in completed.stdout
    with Image.open(output) as image:
        assert image.size == (32, 27)


def test_one_coarse_counts_every_update(tmp_path, image_files):
    contents, styles = image_files
    output = tmp_path / "out.png"
    completed = run_stylize("one", str(contents[0]), str(styles[0]), "-o", str(output), "--weights", "random",
                            "--image-size", "48", "--iterations", "2", "--coarse-sizes", "32",
                            "--coarse-iterations", "3")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith(f"succeeded: {output} (48 x ")
    assert "px), 5 iterations" in completed.stdout
    # The progress bar's total covers the coarse updates too.
    assert "5/5" in completed.stderr


def test_one_lbfgs(tmp_path, image_files):
    contents, styles = image_files
    output = tmp_path / "out.png"
    completed = run_stylize("one", str(contents[0]), str(styles[0]), "-o", str(output), "--weights", "random",
                            "--image-size", "32", "--iterations", "2", "--optimizer", "lbfgs")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert output.is_file()


def test_one_bad_inputs_exit_2_with_one_line(tmp_path, image_files, capsys):
    contents, styles = image_files
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a JPEG")
    cases = [
        ((str(not_image), str(styles[0])), "notes.jpg"),
        ((str(contents[0]), str(styles[0]), "--momentum", "0.5"), "unknown field momentum"),
        ((str(contents[0]), str(styles[0]), "--learning-rate", "-1"), "--learning-rate must be in (0, inf)"),
        ((str(contents[0]), str(styles[0]), "--style-layers", "block9_conv1"), "block9_conv1"),
        ((str(contents[0]), str(styles[0]), "--init", "zeros"), "init must be one of"),
        ((str(contents[0]), str(styles[0]), "--style-layer-weights", "1,1"), "2 style_layer_weights for 5 style_layers"),
        ((str(contents[0]), str(styles[0]), "--coarse-sizes", "32"), "coarse size 32 px is not below"),
        ((str(contents[0]), str(styles[0]), "--coarse-sizes", "24,16"), "coarse_sizes must be increasing"),
        ((str(contents[0]), str(styles[0]), "--coarse-sizes", "17"), "use coarse sizes of at least"),
    ]
    for arguments, expected in cases:
        status = cli.main(["one", *arguments, "-o", str(tmp_path / "out.png"), "--weights", "random",
                           "--image-size", "32", "--iterations", "1"])
        errors = capsys.readouterr().err.strip().splitlines()
        assert status == 2, arguments
        assert len(errors) == 1, errors
        assert errors[0].startswith("stylize: error:")
        assert expected in errors[0]


def test_one_missing_file_no_traceback(tmp_path, image_files):
    _, styles = image_files
    completed = run_stylize("one", str(tmp_path / "missing.png"), str(styles[0]), "-o", str(tmp_path / "out.png"),
                            "--weights", "random")
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert f"stylize: error: {tmp_path / 'missing.png'}" in completed.stderr


def test_one_fewer_style_layers_gets_matching_weights(tmp_path, image_files, capsys):
    contents, styles = image_files
    output = tmp_path / "out.png"
    status = cli.main(["one", str(contents[0]), str(styles[0]), "-o", str(output), "--weights", "random",
                       "--image-size", "32", "--iterations", "1", "--style-layers", "block1_conv1,block2_conv1"])
    assert status == 0, capsys.readouterr().err
    assert output.is_file()


def test_one_output_format_follows_extension(tmp_path, image_files, capsys):
    contents, styles = image_files
    common = ["--weights", "random", "--image-size", "32", "--iterations", "1"]
    output = tmp_path / "out.jpg"
    assert cli.main(["one", str(contents[0]), str(styles[0]), "-o", str(output), *common]) == 0
    with Image.open(output) as image:
        assert image.format == "JPEG"

    assert cli.main(["one", str(contents[0]), str(styles[0]), "-o", str(tmp_path / "out.unknown"), *common]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1].startswith(f"stylize: error: cannot write {tmp_path / 'out.unknown'}")


def test_one_rejects_malformed_numbers(tmp_path, image_files, capsys):
    contents, styles = image_files
    cases = [
        (["--coarse-sizes", "abc"], "invalid comma-separated int list value: 'abc'"),
        (["--image-size", "16"], "16 is outside 32 to 4096"),
    ]
    for options, expected in cases:
        try:
            cli.main(["one", str(contents[0]), str(styles[0]), "-o", str(tmp_path / "out.png"), *options])
        except SystemExit as exit:
            assert exit.code == 2
        else:
            raise AssertionError(f"{options} did not exit")
        assert expected in capsys.readouterr().err
