"""A second run changes nothing: playbooks/monitoring.yml on every lab host (exporters,
pool and backup metrics, Prometheus, Alertmanager). The scenario has no separate
idempotence step (CI minutes): site.yml's second run with changed=0 is asserted on four
hosts by the dr scenario, single-host check mode by the default scenario. Runs last in
the lab scenario (alphabetical order), after the drills and refusals."""

from __future__ import annotations

from tests.integration.pglab import changed_tasks, molecule_playbook, recap


def test_monitoring_rerun_changes_nothing() -> None:
    run = molecule_playbook("playbooks/monitoring.yml", {})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    changed = recap(output)
    assert len(changed) == 4, changed
    assert not any(changed.values()), changed_tasks(output)
