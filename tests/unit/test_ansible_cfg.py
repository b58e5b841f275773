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


def test_the_speed_settings_stay() -> None:
    """The lab re-run's speed rests on these settings (README "Speed"): the callbacks that
    load the Jinja plugins once in the controller and parse the platform's vars files
    once, and facts kept under ansible_facts only (the roles read
    no injected top-level fact)."""
    config = configparser.ConfigParser()
    config.read(CFG)
    enabled = [name.strip() for name in config["defaults"]["callbacks_enabled"].split(",")]
    for callback in ("jinja_plugins_once", "vars_files_once"):
        assert callback in enabled
        assert (CFG.parent / f"plugins/callback/{callback}.py").is_file()
    assert config["defaults"]["inject_facts_as_vars"].strip() == "False"
