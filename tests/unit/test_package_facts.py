"""plugins/modules/mdus_package_facts.py: dpkg-query's lines become {name: version} of the
installed packages, and on this machine (Debian 12) it lists what dpkg itself says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.modload import load_module

REPO = Path(__file__).parents[2]
facts = load_module("mdus_package_facts", REPO / "plugins/modules/mdus_package_facts.py")


def test_only_installed_packages_by_name_and_version() -> None:
    output = (
        "installed\tpostgresql-15\t15.10-0+deb12u1\n"
        "config-files\tpgbouncer\t1.18.0-1\n"
        "not-installed\tetcd-server\t3.4.23-4\n"
        "installed\tlibc6\t2.36-9+deb12u9\n"
        "installed\tlibc6\t2.36-9+deb12u8\n"
        "installed\tbroken line\n"
    )
    packages = facts.parse(output)
    assert packages == {"postgresql-15": "15.10-0+deb12u1", "libc6": "2.36-9+deb12u9"}


def test_the_format_reads_this_machines_dpkg() -> None:
    dpkg_query = shutil.which("dpkg-query")
    assert dpkg_query, "the machine is Debian 12 (LAB-FACTS.md)"
    out = subprocess.run(
        [dpkg_query, "-W", "-f", facts.FORMAT], capture_output=True, text=True, check=True
    ).stdout
    packages = facts.parse(out)
    status = subprocess.run(
        [dpkg_query, "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True
    ).stdout
    assert packages.get("dpkg") == status, out[:500]
    assert all(isinstance(v, str) and v for v in packages.values())
