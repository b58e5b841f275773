"""vars_files_once: the platform's playbooks/vars files are parsed once per run; every
other vars file is read again as Ansible does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader

from tests.modload import load_module

ROOT = Path(__file__).parents[2]
once = load_module("vars_files_once", ROOT / "plugins/callback/vars_files_once.py")
TOPOLOGY = ROOT / "playbooks/vars/topology.yml"


@pytest.fixture
def loader() -> Iterator[DataLoader]:
    once.install()
    try:
        yield DataLoader()
    finally:
        once.uninstall()


def read(loader: DataLoader, path: Path) -> object:
    """The call VariableManager makes for a play's vars_files."""
    return loader.load_from_file(str(path), unsafe=True, cache="vaulted", trusted_as_template=True)


def test_the_topology_vars_are_parsed_once(loader: DataLoader) -> None:
    first = read(loader, TOPOLOGY)
    assert first == yaml.safe_load(TOPOLOGY.read_text())
    assert read(loader, TOPOLOGY) is first


def test_other_vars_files_are_read_again(loader: DataLoader, tmp_path: Path) -> None:
    other = tmp_path / "vars.yml"
    other.write_text("a: 1\n")
    assert read(loader, other) == {"a": 1}
    other.write_text("a: 2\n")
    assert read(loader, other) == {"a": 2}


def test_the_kept_files_are_the_repository_s_own() -> None:
    assert once.kept(str(TOPOLOGY))
    assert not once.kept(str(ROOT / "inventories/lab/group_vars/postgres.yml"))
    assert not once.kept("/etc/hostname")
