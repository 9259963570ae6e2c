"""The one record of a stack: its facts and what ``up`` changed, kept in ``stack.json``.

``Stack.info`` is this object. Whoever changes the machine records the change here and
saves it first, so ``down`` (or the next ``up``, after an interrupted run) undoes exactly
what was done. The keys are the ones earlier versions of the stack wrote, so either
version tears down a stack the other left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "stack.json"


@dataclasses.dataclass
class StackState:
    """A stack's facts and undo record. Every field has a default, so any saved state loads."""

    state_dir: str = ""
    owner_pid: int | None = None  # the process whose stack this is (None: left up by the script)
    account_id: str = ""
    region: str = ""
    registry_host: str = ""
    base_image: str = ""
    # The services; a pid is set only while this stack's process runs.
    moto_port: int = 0
    moto_pid: int | None = None
    registry_pid: int | None = None
    dockerd_pid: int | None = None  # only when this stack started dockerd
    dockerd_started: bool = False
    # The registry's files, and the password it accepts now.
    registry_storage_dir: str = ""
    registry_config_path: str = ""
    registry_log_path: str = ""
    registry_user: str = "AWS"  # ECR's user name for its login tokens
    registry_password: str = ""
    htpasswd_path: str = ""
    ca_path: str = ""
    # Undo records for the machine's files (see ``system_files``).
    hosts_backup: str | None = None
    hosts_line: str | None = None
    certs_created_dirs: list[str] = dataclasses.field(default_factory=list)
    ca_target: str | None = None
    ca_prior: str | None = None

    @property
    def moto_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def registry_url(self) -> str:
        return f"https://{self.registry_host}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "moto_endpoint": self.moto_endpoint}

    def save(self) -> None:
        """Write ``stack.json`` atomically (nothing while the state directory does not exist)."""
        directory = Path(self.state_dir)
        if directory.is_dir():
            tmp = directory / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
            os.replace(tmp, directory / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        """The state saved in ``state_dir`` (None when there is none or it is unreadable)."""
        try:
            saved = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or not saved:
            return None
        names = {field.name for field in dataclasses.fields(cls)}
        known = {key: value for key, value in saved.items() if key in names}
        return cls(**{**known, "state_dir": str(state_dir)})

    @staticmethod
    def forget(state_dir: Path) -> None:
        """Remove the saved state: everything it recorded has been undone."""
        (state_dir / STATE_FILE).unlink(missing_ok=True)
