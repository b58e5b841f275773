"""plugins/modules/mdus_package_facts.py: dpkg-query's lines become package_facts' shape,
and on this machine (Debian 12) it lists what dpkg itself says is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.modload import load_module

REPO = Path(__file__).parents[2]
facts = load_module("mdus_package_facts", REPO / "plugins/modules/mdus_package_facts.py")


def test_only_installed_packages_in_package_facts_shape() -> None:
    output = (
        "installed\tpostgresql-15\t15.10-0+deb12u1\tamd64\tdatabase\n"
        "config-files\tpgbouncer\t1.18.0-1\tamd64\tdatabase\n"
        "not-installed\tetcd-server\t3.4.23-4\tamd64\tdatabase\n"
        "installed\tlibc6\t2.36-9+deb12u9\tamd64\tlibs\n"
        "installed\tlibc6\t2.36-9+deb12u9\ti386\tlibs\n"
        "installed\tbroken line\n"
    )
    packages = facts.parse(output)
    assert sorted(packages) == ["libc6", "postgresql-15"]
    assert packages["postgresql-15"] == [
        {
            "name": "postgresql-15",
            "version": "15.10-0+deb12u1",
            "arch": "amd64",
            "category": "database",
            "source": "apt",
        }
    ]
    assert [p["arch"] for p in packages["libc6"]] == ["amd64", "i386"]


def test_the_format_reads_this_machines_dpkg() -> None:
    dpkg_query = shutil.which("dpkg-query")
    assert dpkg_query, "the machine is Debian 12 (LAB-FACTS.md)"
    out = subprocess.run(
        [dpkg_query, "-W", "-f", facts.FORMAT], capture_output=True, text=True, check=True
    ).stdout
    packages = facts.parse(out)
    assert "dpkg" in packages and packages["dpkg"][0]["version"], out[:500]
    status = subprocess.run(
        [dpkg_query, "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True
    ).stdout
    assert packages["dpkg"][0]["version"] == status
