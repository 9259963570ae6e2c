"""How a release is reported: a summary for people, one JSON document for machines, and
GitHub Actions' output files (``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY``).

Everything here is made from a ``Summary``, which never holds a secret: no token, no
key, no password can reach stdout or either file. A file that cannot be written is
an ``OutputError`` raised after the release, saying that the image was released.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..flows.candidate import Gates
from ..flows.release import Summary


def as_text(summary: Summary) -> str:
    """The summary a person reads at the end of a release."""
    if summary.dry_run:
        title = "dry run: nothing was built, created, logged in to or pushed"
    elif summary.already_released:
        title = "already released: the same image is in the registry, nothing to do"
    else:
        title = "released and verified"
    lines = [title, f"  image:  {summary.image_uri}", f"  digest: {summary.digest}"]
    gates = summary.gates
    if gates is not None:
        reused = " (reused)" if gates.reused else ""
        lines.append(f"  candidate: {gates.candidate}{reused}, {_gone(gates)}")
        lines.append(f"  gates:  smoke test {gates.smoke or 'skipped'}; scan {_scan_of(gates)}")
    made = summary.provenance
    if made is not None and made.dirty:
        allowed = ", --allow-dirty" if summary.allow_dirty else ""
        count = len(made.dirty)
        lines.append(
            f"  tree:   dirty{allowed}: {count} uncommitted change{'s' if count > 1 else ''} "
            f"({made.listed()}), revision {made.revision}"
        )
    return "\n".join([*lines, f"  steps:  {_steps(summary)}"])


def as_json(summary: Summary, plan: Sequence[str] = ()) -> dict[str, Any]:
    """The summary as one JSON document: what a pipeline needs, and no secret."""
    document: dict[str, Any] = {
        "ok": True,
        "image": summary.image_uri,
        "repository": summary.repository,
        "version": summary.version,
        "digest": summary.digest,
        "tags": summary.tags,
        "registry": summary.registry,
        "already_released": summary.already_released,
        "dry_run": summary.dry_run,
        "fingerprint": _fingerprint(summary),
        "steps": {name: round(seconds, 3) for name, seconds in summary.timings},
        "total_seconds": round(_total(summary), 3),
    }
    made = summary.provenance
    if made is not None:
        document["revision"] = made.revision
        document["dirty"] = bool(made.dirty)
        document["uncommitted"] = list(made.dirty)
        document["allow_dirty"] = summary.allow_dirty
    if summary.gates is not None:
        document.update(summary.gates.as_json())
    if summary.dry_run:
        document["plan"] = list(plan)
    return document


def error_json(message: str, exit_code: int, gates: Gates | None = None) -> dict[str, Any]:
    """A failure as one JSON document; one that failed at the gates names the candidate
    and what the gates found (the scan's findings above all)."""
    document = {"ok": False, "error": message, "exit_code": exit_code}
    return document | (gates.as_json() if gates is not None else {})


def write_failure_files(
    message: str, name: str, gates: Gates | None, environ: Mapping[str, str]
) -> str | None:
    """A release that failed at its gates, for GitHub Actions: the gates' outputs
    (``candidate``, ``smoke_test``, ``scan``) and a step summary with the error and the
    worst findings. Nothing for another failure. Returns the warning to print when a file
    cannot be written (the failure itself stays the run's error)."""
    if gates is None:
        return None
    texts = {
        "GITHUB_OUTPUT": _output_lines(_gates_outputs(gates, "not run")),
        "GITHUB_STEP_SUMMARY": f"### Not released: {name}\n\n{message}\n\n"
        + _gates_table(gates, "not run"),
    }
    for key, text in texts.items():
        if environ.get(key):
            try:
                with Path(environ[key]).open("a", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                return f"warning: {key} {environ[key]} cannot be written: {exc.strerror or exc}"
    return None


def write_github_files(summary: Summary, environ: Mapping[str, str]) -> None:
    """Append the step outputs and a Markdown table when GitHub Actions names the files."""
    if summary.dry_run:
        return  # nothing was released: a dry run has no outputs to give later steps
    outputs = {
        "image": summary.image_uri,
        "digest": summary.digest,
        "registry": summary.registry,
        "tags": ",".join(summary.tags),
    }
    gates = summary.gates
    if gates is not None:
        outputs |= _gates_outputs(gates, "skipped")
    if environ.get("GITHUB_OUTPUT"):
        lines = _output_lines(outputs)
        _append(summary, "GITHUB_OUTPUT", Path(environ["GITHUB_OUTPUT"]), lines)
    if environ.get("GITHUB_STEP_SUMMARY"):
        what = "Already released" if summary.already_released else "Released"
        table = (
            f"### {what} {summary.repository}:{summary.version}\n\n"
            "| image | digest | steps |\n| --- | --- | --- |\n"
            f"| `{summary.image_uri}` | `{summary.digest}` | {_steps(summary)} |\n"
        )
        if gates is not None:
            table += "\n" + _gates_table(gates, "skipped")
        _append(summary, "GITHUB_STEP_SUMMARY", Path(environ["GITHUB_STEP_SUMMARY"]), table)


def _gates_outputs(gates: Gates, no_smoke: str) -> dict[str, str]:
    """The gates' step outputs; ``no_smoke`` names a smoke test that did not run."""
    return {
        "candidate": gates.candidate,
        "smoke_test": gates.smoke or no_smoke,
        "scan": _scan_of(gates),
    }


def _gates_table(gates: Gates, no_smoke: str) -> str:
    """The gates as a Markdown table, then the scan's worst findings."""
    return (
        "| candidate | smoke test | scan |\n| --- | --- | --- |\n"
        f"| `{gates.candidate}` ({_gone(gates)}) | {gates.smoke or no_smoke} | "
        f"{_scan_of(gates)} |\n"
    ) + _worst_rows(gates.scan)


def _output_lines(outputs: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in outputs.items())


def _append(summary: Summary, key: str, path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise OutputError(
            f"the image was released as {summary.image_uri}@{summary.digest} (nothing was undone), "
            f"but {key} {path} cannot be written: {exc.strerror or exc}"
        ) from exc


def _steps(summary: Summary) -> str:
    steps = ", ".join(
        f"{name} {seconds:.1f}s" + (" (at the same time)" if name in summary.concurrent else "")
        for name, seconds in summary.timings
    )
    return f"{steps} (total {_total(summary):.1f}s)"


def _total(summary: Summary) -> float:
    """Wall time: a step that ran during another one is not counted twice."""
    if summary.total_seconds:
        return summary.total_seconds
    return sum(seconds for name, seconds in summary.timings if name not in summary.concurrent)


def _gone(gates: Gates) -> str:
    return "removed" if gates.removed else "left for the lifecycle rule"


def _scan_of(gates: Gates) -> str:
    return "not read" if gates.scan is None else str(gates.scan.summary_line())


def _worst_rows(report: Any) -> str:
    """The scan's worst findings as a Markdown table (nothing when it found none)."""
    found = report.as_json()["worst"] if report is not None and report.scanned else []
    if not found:
        return ""
    rows = "".join(
        f"| {f['id']} | {f['severity']}{' (ignored)' if f['ignored'] else ''} | "
        f"{' '.join(filter(None, [f['package'], f['version']])) or '-'} | "
        f"{f['fixed_in'] or '-'} |\n"
        for f in found
    )
    return "\n| finding | severity | package | fixed in |\n| --- | --- | --- | --- |\n" + rows


def _fingerprint(summary: Summary) -> dict[str, str] | None:
    found = summary.fingerprint
    if found is None:
        return None
    return {"digest": found.digest, **{f.name: getattr(found, f.name) for f in fields(found)}}
