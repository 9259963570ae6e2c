"""The machine's files the stack changes: a line in /etc/hosts and a CA under certs.d.

They make docker (and any program) reach ``<account>.dkr.ecr.<region>.amazonaws.com``
on 127.0.0.1 and trust its certificate. Each change is recorded in the state and saved
before it is made; the ``restore_*`` functions undo exactly the record, and leave alone
what someone else changed meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .errors import StackError
from .state import StackState

HOSTS_PATH = Path("/etc/hosts")
CERTS_D = Path("/etc/docker/certs.d")
HOSTS_MARKER = "# ecr-e2e-stack"


def _write_in_place(path: Path, data: bytes) -> None:
    """Rewrite a file's content without replacing the inode (/etc/hosts may be a bind mount)."""
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def _with_line(original: bytes, line: str) -> bytes:
    sep = b"" if not original or original.endswith(b"\n") else b"\n"
    return original + sep + line.encode()


def install_hosts_line(state: StackState) -> None:
    host = state.registry_host
    original = HOSTS_PATH.read_bytes()
    for line in original.decode(errors="replace").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and host in fields[1:]:
            if fields[0] == "127.0.0.1":
                return  # someone already points it at loopback; nothing to add or undo
            raise StackError(f"/etc/hosts already maps {host} to {fields[0]}")
    backup = Path(state.state_dir) / "hosts.orig"
    backup.write_bytes(original)
    state.hosts_backup = str(backup)
    state.hosts_line = f"127.0.0.1 {host} {HOSTS_MARKER}\n"
    state.save()
    _write_in_place(HOSTS_PATH, _with_line(original, state.hosts_line))


def restore_hosts(state: StackState) -> None:
    line = state.hosts_line
    if not line:
        return
    current = HOSTS_PATH.read_bytes()
    backup = Path(state.hosts_backup) if state.hosts_backup else None
    original = backup.read_bytes() if backup and backup.exists() else None
    if original is not None and current == _with_line(original, line):
        _write_in_place(HOSTS_PATH, original)
        return
    # someone else changed the file meanwhile: remove only our line
    kept = [ln for ln in current.decode().splitlines(keepends=True) if ln != line]
    new = "".join(kept).encode()
    if new != current:
        _write_in_place(HOSTS_PATH, new)


def install_ca(state: StackState, ca: Path) -> None:
    host_dir = CERTS_D / state.registry_host
    created = []
    for d in (CERTS_D.parent, CERTS_D, host_dir):
        if not d.exists():
            d.mkdir()
            created.append(str(d))
    target = host_dir / "ca.crt"
    prior = None
    if target.exists():
        prior = Path(state.state_dir) / "certs.d-ca.crt.orig"
        shutil.copy2(target, prior)
    state.certs_created_dirs = created
    state.ca_target = str(target)
    state.ca_prior = str(prior) if prior else None
    state.save()
    shutil.copyfile(ca, target)


def restore_ca(state: StackState) -> None:
    target = state.ca_target
    if not target:
        return
    prior = state.ca_prior
    if prior and Path(prior).exists():
        shutil.copyfile(prior, target)
    else:
        with contextlib.suppress(FileNotFoundError):
            Path(target).unlink()
    for d in reversed(state.certs_created_dirs or []):
        with contextlib.suppress(OSError):
            Path(d).rmdir()  # only if empty
