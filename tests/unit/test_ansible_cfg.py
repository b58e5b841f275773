"""The repository's ansible.cfg serves every inventory, production included."""

from __future__ import annotations

import configparser
from pathlib import Path

CFG = Path(__file__).parents[2] / "ansible.cfg"


def test_ssh_host_keys_are_checked() -> None:
    """The lab reaches containers with docker exec and needs no exception; an SSH
    inventory must verify host keys (known_hosts), so nothing switches the check off."""
    config = configparser.ConfigParser()
    config.read(CFG)
    for section in config.sections():
        value = config[section].get("host_key_checking", "true")
        assert value.strip().lower() not in {"false", "no", "0", "off"}, section
