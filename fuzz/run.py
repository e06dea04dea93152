"""Run dlc's fuzzers for many inputs: ``python -m fuzz.run --count 100000 [--seed N]``.

Each input is made by the generators of :mod:`fuzz` (the same ones the
hypothesis tests in ``tests/test_fuzz.py`` use) from its own seed,
``(seed, index)``, so any input can be made again alone
(``--only INDEX``). Inputs are judged by :func:`fuzz.check_input`: compiled
and run, or rejected with a positioned DlcError; anything else is a failure.

Work is spread over ``--jobs`` worker processes; a worker that dies (a crash
in C code, the memory limit) is restarted and the input it was on is
recorded as a failure. The progress count goes to stderr; at the end a
summary (inputs tried, outcomes, failures by exception type and by place)
goes to stdout, and the first few failing inputs of each kind of failure
are saved to ``fuzz/failures/`` (git-ignored) with their tracebacks.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import fuzz

FAILURES = Path(__file__).resolve().parent / "failures"


def rng_for(seed: int, index: int) -> random.Random:
    return random.Random(f"dlc-fuzz:{seed}:{index}")


def judge(
    seed: int, index: int, tmpdir: Path, seeds: list[tuple[str, str]], kind: str | None, seconds: float
) -> dict[str, object]:
    """Make input ``index`` and judge it; a small record of what happened."""
    item = fuzz.make_input(rng_for(seed, index), kind, seeds)
    record: dict[str, object] = {"index": index, "kind": item.kind}
    try:
        outcome = fuzz.check_input(item, tmpdir, seconds=seconds)
    except fuzz.Failure as failure:
        record.update(
            status="failure",
            type=failure.kind,
            stage=failure.stage,
            where=failure.where,
            message=failure.message,
            detail=failure.detail,
            signature=failure.signature,
            known=fuzz.known_bug(
                failure, item.text if item.text is not None else item.payload.decode("utf-8", "replace")
            ),
        )
        record["payload"] = item.payload.decode("latin-1")  # bytes survive the trip as latin-1
        return record
    record.update(status=outcome.status, stage=outcome.stage)
    return record


def _limit_memory(megabytes: int) -> None:
    if megabytes:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker(
    wid: int,
    seed: int,
    kind: str | None,
    seconds: float,
    memory_mb: int,
    tasks: mp.Queue,
    results: mp.Queue,
    current: object,
) -> None:
    _limit_memory(memory_mb)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    seeds = fuzz.seed_sources()
    crash_at = int(os.environ.get("DLC_FUZZ_CRASH_AT", "-1"))  # for the runner's own test
    with tempfile.TemporaryDirectory(prefix="dlc-fuzz-") as tmp:
        while True:
            task = tasks.get()
            if task is None:
                return
            start, stop = task
            summary: collections.Counter[str] = collections.Counter()
            failures = []
            for index in range(start, stop):
                current[wid] = index  # type: ignore[index]
                if index == crash_at:
                    os._exit(9)
                record = judge(seed, index, Path(tmp), seeds, kind, seconds)
                summary[f"{record['kind']}:{record['status']}"] += 1
                if record["status"] == "failure":
                    failures.append(record)
            current[wid] = -1  # type: ignore[index]
            results.put(("chunk", wid, start, stop, dict(summary), failures))


class Report:
    """Counts, failures by type and by signature, and the saved examples."""

    def __init__(self, keep: int, save: bool) -> None:
        self.tried = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.by_type: collections.Counter[str] = collections.Counter()
        self.by_signature: collections.Counter[str] = collections.Counter()
        self.known: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[int]] = collections.defaultdict(list)
        self.keep, self.save = keep, save
        self.seconds = 0.0
        self.saved: list[Path] = []
        if save:
            FAILURES.mkdir(exist_ok=True)

    def add_chunk(self, summary: dict[str, int], failures: list[dict[str, object]]) -> None:
        self.tried += sum(summary.values())
        self.outcomes.update(summary)
        for record in failures:
            self.add_failure(record)

    def add_failure(self, record: dict[str, object]) -> None:
        signature = str(record["signature"])
        self.by_type[str(record["type"])] += 1
        self.by_signature[signature] += 1
        if record.get("known"):
            self.known[str(record["known"])] += 1
        examples = self.examples[signature]
        if len(examples) < self.keep:
            examples.append(int(record["index"]))  # type: ignore[call-overload]
            if self.save:
                self._save(record)

    def _save(self, record: dict[str, object]) -> None:
        stem = f"{record['type']}-{record['stage']}-{record['index']}"
        data = str(record.get("payload", "")).encode("latin-1")
        path = FAILURES / f"{stem}.dlc"
        path.write_bytes(data)
        info = {k: v for k, v in record.items() if k not in ("payload", "detail")}
        (FAILURES / f"{stem}.txt").write_text(
            json.dumps(info, indent=2, default=str) + "\n\n" + str(record.get("detail", "")), encoding="utf-8"
        )
        self.saved.append(path)

    def text(self, seconds: float, seed: int) -> str:
        failures = sum(self.by_type.values())
        lines = [
            f"inputs tried: {self.tried} in {seconds:.0f} s "
            f"({self.tried / max(seconds, 1e-9):.0f}/s), seed {seed}",
            f"failures: {failures} ({len(self.by_signature)} distinct places)",
            "",
            "outcomes by kind of input:",
        ]
        for key, n in sorted(self.outcomes.items()):
            lines.append(f"  {key:<32} {n:>8}")
        if self.by_type:
            lines += ["", "failures by exception type:"]
            lines += [f"  {k:<32} {n:>8}" for k, n in self.by_type.most_common()]
            lines += ["", "failures by place (type@stage@where), with the first inputs (--only INDEX):"]
            for sig, n in self.by_signature.most_common():
                lines.append(f"  {n:>8}  {sig}   e.g. {', '.join(map(str, self.examples[sig]))}")
        if self.known:
            lines += ["", "of which known bugs (fuzz.KNOWN_BUGS):"]
            lines += [f"  {k:<32} {n:>8}" for k, n in self.known.most_common()]
            lines.append(f"  {'not known':<32} {failures - sum(self.known.values()):>8}")
        if self.saved:
            lines += ["", f"saved {len(self.saved)} failing inputs to {FAILURES}"]
        return "\n".join(lines)


def run(args: argparse.Namespace) -> Report:  # noqa: C901 - the supervisor loop
    report = Report(args.keep, not args.no_save)
    ctx = mp.get_context("fork")
    tasks: mp.Queue = ctx.Queue()
    results: mp.Queue = ctx.Queue()
    current = ctx.Array("q", [-1] * args.jobs)
    chunk_end: dict[int, int] = {}
    pending = 0
    for start in range(args.start, args.start + args.count, args.chunk):
        stop = min(start + args.chunk, args.start + args.count)
        tasks.put((start, stop))
        chunk_end[start] = stop
        pending += 1

    def spawn(wid: int) -> mp.Process:
        p = ctx.Process(
            target=worker,
            args=(wid, args.seed, args.kind, args.timeout, args.memory_mb, tasks, results, current),
            daemon=True,
        )
        p.start()
        return p

    procs = [spawn(w) for w in range(args.jobs)]
    began = time.monotonic()
    last_print = 0.0
    while pending:
        try:
            msg = results.get(timeout=1.0)
        except queue.Empty:
            msg = None
        if msg is not None:
            _, _, start, stop, summary, failures = msg
            report.add_chunk(summary, failures)
            pending -= 1
        for wid, p in enumerate(procs):
            if p.is_alive():
                continue
            index = current[wid]
            if index < 0:
                continue  # between chunks
            # The worker died on input ``index``: record it, requeue the rest of its chunk.
            chunk_start = max(s for s in chunk_end if s <= index)
            stop = chunk_end[chunk_start]
            item = fuzz.make_input(rng_for(args.seed, index), args.kind)
            report.add_chunk({f"{item.kind}:failure": 1}, [])
            report.add_failure(
                {
                    "index": index,
                    "kind": item.kind,
                    "status": "failure",
                    "type": "WorkerDied",
                    "stage": "?",
                    "where": f"exit code {p.exitcode}",
                    "signature": f"WorkerDied@{p.exitcode}",
                    "message": f"exit code {p.exitcode}",
                    "payload": item.payload.decode("latin-1"),
                    "detail": "",
                }
            )
            # The chunk's results die with the worker: queue the inputs before and after this one again.
            pending -= 1
            for a, b in ((chunk_start, index), (index + 1, stop)):
                if a < b:
                    tasks.put((a, b))
                    chunk_end[a] = b
                    pending += 1
            current[wid] = -1
            procs[wid] = spawn(wid)
        now = time.monotonic()
        if not args.quiet and (now - last_print > 2 or not pending):
            last_print = now
            failures = sum(report.by_type.values())
            rate = report.tried / max(now - began, 1e-9)
            print(
                f"\r{report.tried}/{args.count} inputs, {failures} failures, {rate:.0f}/s ",
                end="",
                file=sys.stderr,
                flush=True,
            )
    for _ in procs:
        tasks.put(None)
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
    if not args.quiet:
        print(file=sys.stderr)
    report.seconds = time.monotonic() - began
    return report


def only(args: argparse.Namespace) -> int:
    """Make and judge one input, printing it and what happened."""
    item = fuzz.make_input(rng_for(args.seed, args.only), args.kind)
    sys.stdout.buffer.write(item.payload + b"\n")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            outcome = fuzz.check_input(item, Path(tmp), seconds=args.timeout)
        except fuzz.Failure as failure:
            print(f"--- FAILURE ({item.kind}): {failure}\n{failure.detail}")
            return 1
    print(f"--- {item.kind}: {outcome.status} {outcome.stage} {outcome.message}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="how many inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="index of the first input")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--kind", choices=fuzz.KINDS, help="only this kind of input (default: a mix)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per input before it is a hang")
    parser.add_argument("--memory-mb", type=int, default=3000, help="address-space limit per worker")
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--keep", type=int, default=3, help="failing inputs saved per kind of failure")
    parser.add_argument("--no-save", action="store_true", help="save no failing inputs")
    parser.add_argument("--json", metavar="PATH", help="also write the summary's counts as JSON")
    parser.add_argument("--only", type=int, metavar="INDEX", help="make and judge input INDEX alone")
    parser.add_argument("--quiet", action="store_true", help="no progress count")
    args = parser.parse_args(argv)
    if args.only is not None:
        return only(args)
    report = run(args)
    print(report.text(report.seconds, args.seed))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "tried": report.tried,
                    "seed": args.seed,
                    "seconds": report.seconds,
                    "outcomes": report.outcomes,
                    "by_type": report.by_type,
                    "by_signature": report.by_signature,
                    "known": report.known,
                    "examples": report.examples,
                },
                indent=2,
            )
        )
    return 1 if report.by_type else 0


if __name__ == "__main__":
    sys.exit(main())
