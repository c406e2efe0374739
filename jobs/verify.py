"""Check a style-transfer output folder: `stylize verify OUTPUT` (or `python -m jobs.verify OUTPUT`).

Checks that every task of the latest run's manifest (from `run.json`) has
exactly one results row, that every result's PNG exists, decodes and
matches its recorded sha256, and that each task's convergence rows run
without gaps from iteration 0 to the iterations it ran. Prints a summary
and exits 1 on any problem.
"""

import argparse
import collections
import hashlib
import io
import json
import sys

from PIL import Image

from jobs.outputs import OutputStore

MAX_PROBLEMS_SHOWN = 50


def verify(output: str) -> tuple[list[str], dict]:
    """Return (problems, summary counts) for the output folder `output`."""
    store = OutputStore(output)
    problems = []
    try:
        expected = set(json.loads(store.read_bytes("run.json"))["task_ids"])
    except (OSError, KeyError, ValueError) as error:
        problems.append(f"run.json: missing or unreadable ({error}); rerun the job to write it")
        expected = set()

    results = store.read_table("results", include_pending=True).to_pylist()
    rows = collections.Counter(r["task_id"] for r in results)
    problems += [f"task {t}: {n} results rows, expected 1" for t, n in sorted(rows.items()) if n > 1]
    problems += [f"task {t}: no results row" for t in sorted(expected - set(rows))]

    convergence = store.read_table("convergence", include_pending=True, columns=["task_id", "iteration"])
    iterations = collections.defaultdict(list)
    for task_id, iteration in zip(convergence.column("task_id").to_pylist(), convergence.column("iteration").to_pylist()):
        iterations[task_id].append(iteration)

    for row in results:
        problems += _check_row(store, row, sorted(iterations.get(row["task_id"], [])))

    statuses = collections.Counter(r["status"] for r in results)
    summary = {"expected_tasks": len(expected), "results_rows": len(results), **statuses}
    return problems, summary


def _check_row(store: OutputStore, row: dict, iterations: list[int]) -> list[str]:
    task_id = row["task_id"]
    if row["status"] == "failed":
        return [] if row["error"] else [f"task {task_id}: failed without an error message"]

    problems = []
    if iterations != list(range(row["iterations_run"] or 0)):
        problems.append(f"task {task_id}: convergence iterations are not 0..{(row['iterations_run'] or 0) - 1} "
                        f"without gaps ({len(iterations)} rows)")
    try:
        png = store.read_bytes(f"images/{task_id}.png")
    except OSError as error:
        return problems + [f"task {task_id}: image missing ({error})"]
    digest = hashlib.sha256(png).hexdigest()
    if digest != row["image_sha256"]:
        problems.append(f"task {task_id}: image sha256 {digest[:12]} differs from the recorded {row['image_sha256'][:12]}")
    try:
        with Image.open(io.BytesIO(png)) as image:
            image.load()
    except OSError as error:
        problems.append(f"task {task_id}: image does not decode ({error})")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="stylize verify", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the job's output folder or URI")
    args = parser.parse_args(argv)

    problems, summary = verify(args.output)
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        print(f"problem: {problem}")
    if len(problems) > MAX_PROBLEMS_SHOWN:
        print(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
    counts = ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in summary.items())
    print(f"{'FAILED' if problems else 'OK'}: {args.output}: {counts}, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
