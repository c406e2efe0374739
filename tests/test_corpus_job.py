"""The generated image corpus through `stylize one` and through the batch job in one mixed manifest."""

import hashlib
import json
import textwrap

import pyarrow.parquet as pq

from corpus import ACCEPTED, REJECTED, write_corpus
from jobs import cli, stylize, verify

# The corpus' colour checks hold from 64 px up.
IMAGE_SIZE_PX = 64


def job_cases(cases):
    """Every rejected case and one accepted case of each kind, with distinct bytes.

    A missing path or a directory is a manifest error, not a task, so those
    two are left to the manifest tests. Files with equal bytes share one
    task, since task ids follow the bytes.
    """
    chosen, seen_kinds, seen_bytes = [], set(), set()
    for case in cases:
        if not case.path.is_file():
            continue
        kind = case.name.split("_")[0]
        digest = hashlib.sha256(case.path.read_bytes()).hexdigest()
        if digest in seen_bytes or (case.expected == ACCEPTED and kind in seen_kinds):
            continue
        seen_kinds.add(kind)
        seen_bytes.add(digest)
        chosen.append(case)
    return chosen


def test_corpus_through_batch_job(local_ray, tmp_path, image_files):
    cases = job_cases(write_corpus(tmp_path / "corpus"))
    _, styles = image_files
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(textwrap.dedent(f"""
        output: out
        weights: random
        image_size: {IMAGE_SIZE_PX}
        iterations: 1
        pairs:
          - content: {json.dumps([str(c.path) for c in cases])}
            style: {styles[0]}
        optimizers:
          - name: adam
    """))

    # Some tasks fail, so the job exits 1, but every healthy task finishes.
    assert stylize.main([str(manifest)]) == 1

    rows = {r["content"]: r for r in pq.read_table(tmp_path / "out" / "results").to_pylist()}
    for case in cases:
        row = rows[str(case.path)]
        if case.expected == ACCEPTED:
            assert row["status"] == "succeeded", (case.name, row["error"])
        else:
            assert row["status"] == "failed", case.name
            assert case.error in row["error"], (case.name, row["error"])
            assert str(case.path) in row["error"], (case.name, row["error"])
            assert "\n" not in row["error"], case.name
    assert verify.verify(str(tmp_path / "out"))[0] == []


def test_corpus_rejections_through_stylize_one(tmp_path, image_files, capsys):
    cases = [c for c in write_corpus(tmp_path / "corpus") if c.expected == REJECTED]
    _, styles = image_files
    for case in cases:
        status = cli.main(["one", str(case.path), str(styles[0]), "-o", str(tmp_path / "out.png"),
                           "--weights", "random", "--image-size", str(IMAGE_SIZE_PX), "--iterations", "1"])
        errors = capsys.readouterr().err.strip().splitlines()
        assert status == 2, case.name
        assert len(errors) == 1, (case.name, errors)
        assert case.error in errors[0], (case.name, errors[0])


def test_corpus_acceptances_through_stylize_one(tmp_path, image_files, capsys):
    accepted = [c for c in write_corpus(tmp_path / "corpus") if c.expected == ACCEPTED]
    _, styles = image_files
    # One case of each kind keeps this quick; the batch job test runs them all.
    for case in {c.name.split("_")[0]: c for c in accepted}.values():
        output = tmp_path / f"{case.name}.png"
        status = cli.main(["one", str(case.path), str(styles[0]), "-o", str(output),
                           "--weights", "random", "--image-size", str(IMAGE_SIZE_PX), "--iterations", "1"])
        assert status == 0, (case.name, capsys.readouterr().err)
        assert output.is_file()
