"""postgresql_huge_pages_reserve on a host whose kernel settings are its own (this scenario's
container may write vm.nr_hugepages; the lab gives the pool back on destroy)."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.pglab import changed_tasks, molecule_playbook, psql, recap

SYSCTL_FILE = "/etc/sysctl.d/60-mdus-hugepages.conf"
SERVICE = "postgresql@15-main"
TAGS = ("--tags", "postgresql-hugepages")


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


def test_a_server_on_small_pages_waits_for_the_window_then_gets_them(host: Any) -> None:
    """The pool emptied under a stopped server, which then starts on 4 kB pages: with
    restarts off the role changes nothing and names the command for the window; with them
    on it raises the pool, restarts the server and checks it maps the pages."""
    name = host.backend.get_hostname()
    needed = int(psql(host, "SHOW shared_memory_size_in_huge_pages"))
    host.run_expect([0], "systemctl stop %s", SERVICE)
    host.run_expect([0], "sysctl -q -w vm.nr_hugepages=0")
    host.run_expect([0], "systemctl start %s", SERVICE)
    host.run_expect([0], "pg_isready -t 30")
    assert _postmaster_huge_kb(host) == 0
    started = psql(host, "SELECT pg_postmaster_start_time()")

    run = molecule_playbook("site.yml", {"postgresql_allow_restart": False}, name, options=TAGS)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert recap(output) == {name: 0}, changed_tasks(output)
    assert f"it needs {needed} huge pages" in output, output[-3000:]
    assert "-e postgresql_allow_restart=true" in output
    assert int(host.file("/proc/sys/vm/nr_hugepages").content_string) == 0
    assert psql(host, "SELECT pg_postmaster_start_time()") == started

    run = molecule_playbook("site.yml", {}, name, options=TAGS)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert recap(output)[name] >= 2, changed_tasks(output)  # the pool and the restart
    assert int(host.file("/proc/sys/vm/nr_hugepages").content_string) >= needed
    assert _postmaster_huge_kb(host) > 0
    assert psql(host, "SELECT pg_postmaster_start_time()") != started
