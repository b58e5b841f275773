"""A re-run finds what was changed by hand and puts it back: a setting in postgresql.conf
(reloaded live, as an operator's quick fix would be), a `trust` line in pg_hba.conf, and
the modes of PostgreSQL's TLS key (made world-readable) and certificate. site.yml reports
exactly those files and the reload as changed, the server runs the managed values again,
and the key and certificate keep their content (a mode is set back, nothing re-signed)."""

from __future__ import annotations

from typing import Any

from tests.integration.pglab import CONF_DIR, changed_tasks, molecule_playbook, psql, recap

PKI_KEY, PKI_CERT = "/etc/mdus-pki/host.key", "/etc/mdus-pki/host.crt"


def test_rerun_puts_back_what_was_changed_by_hand(host: Any) -> None:
    name = host.backend.get_hostname()
    conf, hba = f"{CONF_DIR}/postgresql.conf", f"{CONF_DIR}/pg_hba.conf"
    managed = {path: host.file(path).content_string for path in (conf, hba)}
    host.run_test(
        "sed -i \"s/^log_min_duration_statement = .*/log_min_duration_statement = '7s'/\" %s",
        conf,
    )
    host.run_test("echo 'host all all 0.0.0.0/0 trust' >> %s", hba)
    psql(host, "SELECT pg_reload_conf()")
    assert psql(host, "SHOW log_min_duration_statement") == "7s"
    tls = {path: host.file(path).content_string for path in (PKI_KEY, PKI_CERT)}
    host.run_test("chmod 0644 %s && chmod 0664 %s", PKI_KEY, PKI_CERT)

    # Ansible's own strategy: the path without Mitogen (a plain ansible-playbook) is
    # tested by this real site.yml run; every other run in CI uses Mitogen (a linear
    # site.yml run costs ~2 min more here, so only this one).
    run = molecule_playbook("site.yml", {}, strategy="linear")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert recap(output) == {name: 5}, changed_tasks(output)
    assert sorted(changed_tasks(output)) == [
        f"pki : Create the key of each identity (the key never leaves the host) -> {name}",
        f"pki : Keep each certificate's owner and mode -> {name}",
        f"postgresql : Reload postgresql -> {name}",
        f"postgresql : Render pg_hba.conf -> {name}",
        f"postgresql : Render postgresql.conf -> {name}",
    ]
    assert {path: host.file(path).content_string for path in managed} == managed
    assert psql(host, "SHOW log_min_duration_statement") == "1s"
    rules = psql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'")
    assert rules == "0"
    assert host.file(PKI_KEY).mode == 0o640 and host.file(PKI_CERT).mode == 0o644
    assert {path: host.file(path).content_string for path in tls} == tls
