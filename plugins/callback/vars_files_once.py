"""Parse the platform's own vars files once per run, not once per task and host.

A play's `vars_files` are read again whenever Ansible computes the variables of a host
for a task: the file is opened and its YAML parsed each time (Ansible keeps only vaulted
files, since a task could rewrite a plain one during the run). The platform's plays load
playbooks/vars/topology.yml, which nothing writes: on the 4-host lab re-run those reads
took ~1.9 s of the controller's time, which every task waits for. This plugin lets
Ansible keep the parsed files of this repository's playbooks/vars directory as it keeps
vaulted ones; every other file is read as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.parsing.dataloader import DataLoader
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: vars_files_once
    type: aggregate
    short_description: keep the parsed vars files of the platform's playbooks/vars
    description:
        - Ansible reads a play's vars_files again for every task and host; the files of
          this repository's playbooks/vars are parsed once per run instead.
    requirements:
      - enable in configuration (callbacks_enabled)
"""

VARS_DIR = Path(__file__).resolve().parents[2] / "playbooks" / "vars"
_state: dict[str, Any] = {"original": None}


def kept(file_name: str) -> bool:
    """Whether a vars file is one of the platform's own (a resolved path in VARS_DIR)."""
    try:
        return Path(file_name).resolve().parent == VARS_DIR
    except (OSError, ValueError):
        return False


def load_from_file(self: DataLoader, file_name: str, *args: Any, **kwargs: Any) -> Any:
    if kwargs.get("cache") == "vaulted" and kept(self.path_dwim(file_name)):
        kwargs["cache"] = "all"
    return _state["original"](self, file_name, *args, **kwargs)


def install() -> None:
    if _state["original"] is None:
        _state["original"] = DataLoader.load_from_file
        DataLoader.load_from_file = load_from_file


def uninstall() -> None:
    if _state["original"] is not None:
        DataLoader.load_from_file = _state["original"]
        _state["original"] = None


class CallbackModule(CallbackBase):  # type: ignore[misc]
    """Installs the wrapper in the controller, where the variables are computed."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "vars_files_once"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        install()
