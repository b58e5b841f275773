"""postgresql_huge_pages_reserve on a host whose kernel settings are its own (this scenario's
container may write vm.nr_hugepages; the lab gives the pool back on destroy)."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.pglab import psql

SYSCTL_FILE = "/etc/sysctl.d/60-mdus-hugepages.conf"


def _postmaster_huge_kb(host: Any) -> int:
    """kB of the postmaster's memory mapped in huge pages (PostgreSQL's /anon_hugepage)."""
    data_dir = psql(host, "SHOW data_directory")
    pid = host.file(f"{data_dir}/postmaster.pid").content_string.splitlines()[0]
    smaps = host.run("cat /proc/%s/smaps", pid)
    assert smaps.rc == 0, smaps.stderr
    sizes = re.findall(r"anon_hugepage.*\nSize:\s+(\d+) kB", smaps.stdout)
    return sum(int(size) for size in sizes)


def test_shared_memory_is_in_huge_pages(host: Any) -> None:
    needed = int(psql(host, "SHOW shared_memory_size_in_huge_pages"))
    page_kb = int(host.run("awk '/^Hugepagesize:/ {print $2}' /proc/meminfo").stdout)
    assert needed > 0
    assert _postmaster_huge_kb(host) >= needed * page_kb


def test_pool_is_kept_for_the_next_boot(host: Any) -> None:
    needed = int(psql(host, "SHOW shared_memory_size_in_huge_pages"))
    kept = host.file(SYSCTL_FILE)
    assert kept.mode == 0o644
    found = re.search(r"^vm\.nr_hugepages\s*=\s*(\d+)\s*$", kept.content_string, re.MULTILINE)
    assert found, kept.content_string
    assert int(found.group(1)) >= needed
    assert int(host.file("/proc/sys/vm/nr_hugepages").content_string) >= needed
