"""Each role's tags run alone on the converged host: `site.yml --tags <role>-<concern>`
still refuses bad input and finds the real primary (the preflight is tagged always), runs
the tagged tasks - which find what they need without the role's other steps - and
changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.pglab import changed_tasks, molecule_playbook, recap

# tag -> a task it must run (so the test cannot pass by running nothing)
TAGS = {
    "pki-host": "pki : Read every key and certificate of this host",
    "postgresql-configure": "postgresql : Render postgresql.conf",
    "mdus_schema-migrate": "mdus_schema : Read the migration status",
    "pgbouncer-configure": "pgbouncer : Render PgBouncer's client authentication rules",
    "monitoring_agent-healthcheck": "monitoring_agent : Render mdus-health",
}


@pytest.mark.parametrize("tag", TAGS)
def test_tag_runs_alone_and_changes_nothing(host: Any, tag: str) -> None:
    run = molecule_playbook("site.yml", {}, options=("--tags", tag))
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert f"TASK [{TAGS[tag]}" in output, f"--tags {tag} ran none of its tasks"
    assert not any(recap(output).values()), changed_tasks(output)
