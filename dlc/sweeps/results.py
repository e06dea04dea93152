"""A sweep's folder: what it ran, every finished run, and the table.

- ``sweep.json``: what every run shares (the model's text, data, backend,
  dtype, ...); ``--resume`` continues only a sweep of the same.
- ``runs.jsonl``: one line per finished run, appended (and synced) as it
  finishes, so a sweep that is killed loses no finished run. A line cut short
  by a kill is dropped when the sweep is resumed.
- ``histories/``: each run's history, the CSV ``dlc train`` writes.
- ``summary.csv`` and ``runs.csv``: the table per configuration (mean and
  spread over seeds) and per run; ``best.dlc``: the best configuration as a
  train block to paste into the model file. Written at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc.atomic import write_text
from dlc.errors import DlcError
from dlc.sweeps.job import DIED, DIVERGED, ERROR, OK
from dlc.train.history import HEADER

MANIFEST, RUNS, HISTORIES = "sweep.json", "runs.jsonl", "histories"
#: Mean losses closer than this (relative) are a tie for the best configuration.
TIE = 1e-9
#: The numbers kept of each run, and how the table heads them.
METRICS = {"final_loss": "final loss", "best_loss": "best loss", "accuracy": "accuracy",
           "val_loss": "val loss", "val_accuracy": "val accuracy"}  # fmt: skip


class Folder:
    """The sweep's folder; the finished runs found in it when resuming."""

    def __init__(self, path: Path, context: dict[str, Any], resume: bool) -> None:
        self.path = path
        if path.exists() and not path.is_dir():
            raise DlcError(f"--out {path}: it exists and is not a folder")
        try:
            (path / HISTORIES).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DlcError(f"--out {path}: cannot make the folder: {exc.strerror or exc}") from None
        runs = path / RUNS
        if runs.is_symlink() or (runs.exists() and not runs.is_file()):
            raise DlcError(f"--out {path}: its {RUNS} is not a regular file")
        self._runs = open(runs, "ab")  # noqa: SIM115 (open for the whole sweep)
        try:
            self._claim(resume, context)
        except BaseException:
            self._runs.close()
            raise
        write_text(path / MANIFEST, json.dumps(context, indent=1) + "\n")

    def _claim(self, resume: bool, context: dict[str, Any]) -> None:
        """Hold the folder for this sweep alone; read its finished runs if resuming."""
        try:
            import fcntl

            fcntl.flock(self._runs.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no file locks here: two sweeps into one folder are not prevented
            pass
        except OSError:
            raise DlcError(f"--out {self.path} is in use by another sweep that is running",
                           hint="wait for it, or give another --out") from None  # fmt: skip
        earlier = os.fstat(self._runs.fileno()).st_size > 0
        if earlier and not resume:
            raise DlcError(f"--out {self.path} holds the results of an earlier sweep",
                           hint="add --resume to continue it, or give another --out")  # fmt: skip
        self.finished: dict[str, dict[str, Any]] = {}
        if earlier:
            self._check_context(context)
            self.finished = _read_runs(self.path / RUNS)

    def _check_context(self, context: dict[str, Any]) -> None:
        try:
            before = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if not isinstance(before, dict):
            raise DlcError(f"--out {self.path}: its {MANIFEST} is missing or damaged; cannot tell what "
                           "its runs were", hint="give another --out")  # fmt: skip
        changed = [k for k in context if before.get(k) != context[k]]
        if changed:
            raise DlcError(
                f"--resume: {self.path} holds a sweep with another {', '.join(changed)}; its runs "
                "cannot be mixed with these",
                hint="resume with what it had, or give another --out",
            )

    def add(self, record: dict[str, Any]) -> None:
        """Keep a finished run: its history, then its line (synced: it survives a kill after this)."""
        history = record.pop("history", None)
        if history is not None:
            name = f"{HISTORIES}/{_file_name(record['key'])}.csv"
            lines = [HEADER] + [",".join("" if v is None else repr(v) for v in row) + "\n" for row in history]
            write_text(self.path / name, "".join(lines))
            record["history_file"] = name
        self._runs.write((json.dumps(record, allow_nan=True) + "\n").encode())
        self._runs.flush()
        os.fsync(self._runs.fileno())
        if record["status"] != DIED:
            self.finished[record["key"]] = record

    def close(self) -> None:
        self._runs.close()


def _read_runs(path: Path) -> dict[str, dict[str, Any]]:
    """The runs in ``runs.jsonl`` that finished (a died run is run again); cuts off a torn last line."""
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(whole))
    found: dict[str, dict[str, Any]] = {}
    for line in whole.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("key"), str) and record.get("status") != DIED:
            found[record["key"]] = record
    return found


def _file_name(key: str) -> str:
    """A file name for a run: its key in safe characters, and a short hash so that two never meet."""
    safe = re.sub(r"[^A-Za-z0-9.=-]+", "_", key.replace(" = ", "=").replace(", ", "_"))[:80].strip("_")
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


# ------------------------------------------------------------------ the table


@dataclass
class Row:
    """One configuration: its runs, and each metric's mean and spread (sample standard deviation)."""

    config: tuple[tuple[str, str], ...]
    runs: list[dict[str, Any]]  # those that finished
    expected: int = 0  # the runs the configuration has (one per seed)
    stats: dict[str, tuple[float, float] | None] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.runs)

    @property
    def complete(self) -> bool:
        """Every run trained to its end (none diverged, failed or is missing)."""
        return len(self.runs) == self.expected and all(r["status"] == OK for r in self.runs)

    def record(self) -> dict[str, Any]:
        """The row as a flat record: the settings, counts, then ``<metric>_mean`` and ``<metric>_sd``."""
        out: dict[str, Any] = dict(self.config)
        out.update(runs=self.expected, ok=self.count(OK), diverged=self.count(DIVERGED),
                   failed=self.count(ERROR) + self.count(DIED))  # fmt: skip
        for metric in METRICS:
            mean, sd = self.stats.get(metric) or (None, None)
            out[f"{metric}_mean"], out[f"{metric}_sd"] = mean, sd
        return out


def table(configurations: Sequence[tuple[tuple[str, str], ...]], records: dict[str, dict[str, Any]],
          keys: dict[tuple[tuple[str, str], ...], list[str]]) -> list[Row]:  # fmt: skip
    """The rows, in the grid's order; a configuration's metrics over its runs that trained to the end."""
    rows = []
    for config in configurations:
        runs = [records[k] for k in keys[config] if k in records]
        row = Row(config, runs, len(keys[config]))
        for metric in METRICS:
            values = [r[metric] for r in runs if r["status"] == OK and _finite(r.get(metric))]
            if values:
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                row.stats[metric] = (statistics.fmean(values), sd)
        rows.append(row)
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def best(rows: Sequence[Row]) -> Row | None:
    """The configuration whose every run trained to the end with the lowest mean validation loss
    (the final loss when there is no validation set), the first of a tie; None if none did."""
    complete = [r for r in rows if r.complete]
    metric = "val_loss" if any(r.stats.get("val_loss") for r in complete) else "final_loss"
    scored = [(r.stats[metric][0], r) for r in complete if r.stats.get(metric)]  # type: ignore[index]
    if not scored:
        return None
    lowest = min(score for score, _ in scored)
    # the first in the grid's order among those that tie with it (to 9 digits: runs that reach the
    # same minimum differ in their last bits)
    return next(r for score, r in scored if score <= lowest + TIE * max(1.0, abs(lowest)))


def format_table(rows: Sequence[Row], names: Sequence[str]) -> str:
    """The table for a terminal: one line per configuration."""
    shown = [m for m in METRICS if any(r.stats.get(m) for r in rows)]
    head = [*names, "runs", *(METRICS[m] for m in shown)]
    body = []
    for row in rows:
        values = dict(row.config)
        cells = [values[n] for n in names]
        counts = str(row.expected) if row.complete else f"{row.count(OK)}/{row.expected}"
        notes = [f"{row.count(s)} {s}" for s in (DIVERGED, ERROR, DIED) if row.count(s)]
        cells.append(counts)
        for metric in shown:
            stat = row.stats.get(metric)
            cells.append("-" if stat is None else _mean_sd(stat, len(row.runs) > 1))
        body.append((cells, notes))
    widths = [max(len(h), *(len(c[i]) for c, _ in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    for cells, notes in body:
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        lines.append(line + (f"   ({', '.join(notes)})" if notes else ""))
    return "\n".join(lines)


def _mean_sd(stat: tuple[float, float], spread: bool) -> str:
    mean, sd = stat
    return f"{mean:.4g} ± {sd:.2g}" if spread else f"{mean:.4g}"


def rows_csv(rows: Sequence[Row]) -> str:
    return _csv([row.record() for row in rows])


def runs_csv(records: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    columns = ["key", *names, "seed", "status", "epochs", *METRICS, "seconds", "attempts", "history_file",
               "message"]  # fmt: skip
    flat = [{**r.get("config", {}), **{k: r.get(k) for k in columns if k not in names}} for r in records]
    return _csv(flat, columns)


def _csv(records: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    out = io.StringIO()
    fields = list(columns) if columns is not None else (list(records[0]) if records else [])
    writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in fields})
    return out.getvalue()
