"""Benchmark: what the uncommitted-changes check adds to a release (issue 21).

Prints figures; asserts nothing. Makes a git repository of 20,000 committed files in a
temporary folder (a build context with a ``.dockerignore``), then times, as the release
does, ``revision()`` (``git rev-parse``, one ``git status --porcelain=v2 -z``, the remote)
plus ``provenance()`` (which changes reach the image), clean and with a few changes, and
the old ``revision()`` cost (``git rev-parse HEAD``, the remote) for comparison. A release
asks git while it walks the context (its secret scan and digest, which it makes anyway):
what the check adds to a release is the walk with git beside it, less the walk alone.
Goal: at most 50 ms. Run:

    uv run --group dev python -m benchmarks.dirty [--files N] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ecr_release.model.buildcontext import scan_context
from ecr_release.model.provenance import Provenance, provenance
from ecr_release.outside.git import revision

GOAL_MS = 50.0


def git(path: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=b", "-c", "user.email=b@example.invalid", *args],
        check=True,
        capture_output=True,
    )


def make_repository(root: Path, files: int) -> Path:
    context = root / "app"
    for i in range(files):
        folder = context / f"pkg{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"module{i:05d}.py").write_text(f"VALUE = {i}\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (context / ".dockerignore").write_text("pkg000/\n")
    # As in a real checkout, the files are older than git's index: written in the same
    # second as the index, each would be "racily clean" and read again by every status.
    past = time.time() - 3600
    for path in context.rglob("*"):
        os.utime(path, (past, past))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "files")
    return context


def median_ms(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecr-bench-dirty-") as tmp:
        context = make_repository(Path(tmp), args.files)
        dockerfile = context / "Dockerfile"

        def old() -> object:  # what revision() ran before: the commit, then the remote
            subprocess.run(["git", "-C", str(context), "rev-parse", "HEAD"], capture_output=True)
            return subprocess.run(
                ["git", "-C", str(context), "config", "--get", "remote.origin.url"],
                capture_output=True,
            )

        def check() -> Provenance:
            return provenance(revision(context), context, dockerfile)

        def walk() -> object:  # the context walk every release makes (secrets, digest)
            return scan_context(context, dockerfile)

        def walk_and_check() -> Provenance:  # as the release does: git asked during the walk
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(revision, context)
                walk()
                return provenance(pending.result(), context, dockerfile)

        check()  # a first status refreshes git's index stat cache, as any earlier git command
        before = median_ms(old, args.runs)
        clean = median_ms(check, args.runs)
        walked = median_ms(walk, args.runs)
        beside = median_ms(walk_and_check, args.runs)
        for i in range(5):
            (context / f"pkg{1 + i:03d}" / f"module{(1 + i) * 500:05d}.py").write_text("edited\n")
        (context / "untracked.py").write_text("new\n")
        dirty = median_ms(check, args.runs)
        found = check()
    added = beside - walked
    print(f"{args.files} files, medians of {args.runs} runs")
    print(f"  the revision before (rev-parse HEAD, remote):  {before:7.1f} ms")
    print(f"  revision + provenance, clean tree:             {clean:7.1f} ms")
    print(f"  revision + provenance, 6 changes:              {dirty:7.1f} ms ({found.listed()})")
    print(f"  the context walk alone (secrets, digest):      {walked:7.1f} ms")
    print(f"  the walk with the check beside it, clean:      {beside:7.1f} ms")
    verdict = "met" if added <= GOAL_MS else "NOT met"
    print(
        f"  added to a release by the check: {added:.1f} ms, over the old revision's "
        f"{before:.1f} ms (goal <= {GOAL_MS:.0f} ms: {verdict})"
    )


if __name__ == "__main__":
    main()
