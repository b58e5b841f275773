"""One key per identity, a renewed certificate loaded by every service in the same run,
and no secret in a -vvv --diff log.

Every service has its own key (roles/pki): host.key (PostgreSQL), pgbackrest.key,
pgbouncer.key (PgBouncer runs as its own user), monitoring.key; each OS user reads only
its own (tests/integration/hardening.py on the database hosts, here on the repository
and monitoring hosts), and the repository refuses every certificate but pgBackRest's.
Then site.yml with pki_force_renew=true -vvv --diff: each service presents the new
serial on the wire (openssl s_client), the primary was reloaded, not restarted, and the
log (with files that carry secrets rewritten under --diff) holds none of the lab's
generated secrets.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.pglab import PKI_DIR, lab_secret, molecule_playbook, node, psql

PRIMARY, REPLICA, REPO, MON = "mdus-lab-pg1", "mdus-lab-pg2", "mdus-lab-repo", "mdus-lab-mon"
# (host, port, openssl -starttls protocol or "", certificate file the service presents)
SERVICES = [
    (PRIMARY, 5432, "postgres", "host"),  # PostgreSQL
    (PRIMARY, 6432, "postgres", "pgbouncer"),  # PgBouncer
    (REPLICA, 5432, "postgres", "host"),
    (REPO, 8432, "", "pgbackrest"),  # pgBackRest TLS server
    (PRIMARY, 8432, "", "pgbackrest"),
    (PRIMARY, 9100, "", "monitoring"),  # node exporter
    (PRIMARY, 9187, "", "monitoring"),  # PostgreSQL exporter
    (MON, 9090, "", "monitoring"),  # Prometheus
]

# Every secret the lab generates (inventories/lab: password lookups in MDUS_LAB_DIR).
SECRETS = [
    "mdus_dba",
    "mdus_drill",
    "replicator",
    "mdus_app",
    "mdus_readonly",
    "mdus_analyst",
    "pgbackrest_cipher",
]
# Files holding a secret, changed by hand before the -vvv --diff run so it rewrites them.
DRIFT = [(REPLICA, "/var/lib/postgresql/.pgpass"), (REPO, "/etc/pgbackrest/conf.d/cipher.conf")]


def file_serial(name: str, identity: str) -> str:
    cmd = node(name).run("openssl x509 -noout -serial -in %s/%s.crt", PKI_DIR, identity)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip().split("=", 1)[1].lower()


def wire_serial(name: str, port: int, starttls: str) -> str:
    """The serial of the certificate a service presents, read off the wire by a client
    that presents the monitoring certificate (the exporters want a client certificate)."""
    starttls_arg = f"-starttls {starttls}" if starttls else ""
    cmd = node(name).run(
        f"openssl s_client -connect {name}:{port} {starttls_arg} -servername {name} "
        f"-CAfile {PKI_DIR}/ca.crt -cert {PKI_DIR}/monitoring.crt -key {PKI_DIR}/monitoring.key"
        " </dev/null 2>/dev/null | openssl x509 -noout -serial"
    )
    assert cmd.rc == 0 and "serial=" in cmd.stdout, (name, port, cmd.stdout, cmd.stderr)
    return cmd.stdout.strip().split("=", 1)[1].lower()


@pytest.mark.parametrize("name", [PRIMARY, REPLICA, REPO, MON])
def test_prometheus_reads_its_own_key_only(name: str) -> None:
    host = node(name)
    groups = host.run("id -nG prometheus").stdout.split()
    assert "mdus-monitoring" in groups and "ssl-cert" not in groups, groups
    assert host.run(f"runuser -u prometheus -- test -r {PKI_DIR}/monitoring.key").rc == 0
    denied = host.run(f"runuser -u prometheus -- cat {PKI_DIR}/host.key")
    assert denied.rc != 0 and "Permission denied" in denied.stderr, denied.stdout[:40]
    for key in ("host.key", "monitoring.key"):
        target = host.file(f"{PKI_DIR}/{key}")
        assert target.mode == 0o640 and target.user == "root", (key, oct(target.mode))
    assert host.file(f"{PKI_DIR}/monitoring.key").group == "mdus-monitoring"
    assert host.file(f"{PKI_DIR}/host.key").group == "ssl-cert"
    subject = host.run(f"openssl x509 -noout -subject -in {PKI_DIR}/monitoring.crt").stdout
    assert f"CN = monitoring@{name}" in subject, subject


def repo1_info(identity: str) -> dict[str, Any]:
    """pgBackRest info from the primary, presenting the certificate of an identity."""
    primary = node(PRIMARY)
    # pgBackRest wants a key of mode 0600 when root runs it: a private copy for the test
    key = f"/root/{identity}-test.key"
    assert primary.run(f"install -m 0600 {PKI_DIR}/{identity}.key {key}").rc == 0
    try:
        cmd = primary.run(
            "pgbackrest --stanza=mdus --log-level-file=off --output=json "
            f"--repo1-host-cert-file={PKI_DIR}/{identity}.crt --repo1-host-key-file={key} info"
        )
    finally:
        primary.run(f"rm -f {key}")
    return next(r for r in json.loads(cmd.stdout)[0]["repo"] if r["key"] == 1)


@pytest.mark.parametrize("identity", ["monitoring", "host", "pgbouncer"])
def test_repository_refuses_every_certificate_but_pgbackrests(identity: str) -> None:
    """A pgBackRest request from a database host with the exporters', PostgreSQL's or
    PgBouncer's certificate is refused by the repository host (its tls-server-auth names
    pgBackRest's CNs); the same request with pgBackRest's own certificate is served."""
    refused = repo1_info(identity)
    assert refused["status"]["code"] == 99, refused
    assert "access denied" in refused["status"]["message"], refused
    served = repo1_info("pgbackrest")
    assert served["status"]["code"] == 0, served


@pytest.mark.parametrize("name", [REPO, MON])
def test_other_hosts_keys_are_their_services_own(name: str) -> None:
    """On the repository host pgBackRest's user (postgres) reads pgbackrest.key but not
    host.key (no PostgreSQL runs there); the monitoring host has no pgBouncer key."""
    host = node(name)
    keys = set(host.run(f"ls {PKI_DIR}").stdout.split())
    assert "pgbouncer.key" not in keys, keys
    assert ("pgbackrest.key" in keys) == (name == REPO), keys
    if name == REPO:
        assert "ssl-cert" not in host.run("id -nG postgres").stdout.split()
        assert host.run(f"runuser -u postgres -- test -r {PKI_DIR}/pgbackrest.key").rc == 0
        assert host.run(f"runuser -u postgres -- test -r {PKI_DIR}/host.key").rc != 0
        subject = host.run(f"openssl x509 -noout -subject -in {PKI_DIR}/pgbackrest.crt").stdout
        assert f"CN = pgbackrest@{name}" in subject, subject


def test_forced_renewal_reaches_every_service_without_a_restart() -> None:
    before = {(name, port): wire_serial(name, port, tls) for name, port, tls, _ in SERVICES}
    for name, port, _, identity in SERVICES:
        assert before[(name, port)] == file_serial(name, identity), (name, port)
    started = psql(node(PRIMARY), "SELECT pg_postmaster_start_time()")
    # Drift in the files that carry secrets, so the run rewrites them under --diff.
    for name, path in DRIFT:
        assert node(name).run(f"echo '# drift' >> {path}").rc == 0
    clock = time.monotonic()
    # (A task's environment is printed at -vvv by Ansible's own strategy, not by Mitogen's:
    # tests/unit/test_no_secret_in_environment.py keeps secrets out of environments.)
    run = molecule_playbook("site.yml", {"pki_force_renew": True}, options=("-vvv", "--diff"))
    seconds = time.monotonic() - clock
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    print(f"forced renewal: site.yml -vvv --diff {seconds:.0f} s, {len(output)} characters")
    for name, path in DRIFT:
        assert "# drift" not in node(name).file(path).content_string, f"{path} kept the drift"
    leaked = [secret for secret in SECRETS if lab_secret(secret) in output]
    assert not leaked, f"the -vvv --diff log prints the lab's secrets {leaked}"
    for name, port, tls, identity in SERVICES:
        new = file_serial(name, identity)
        assert new != before[(name, port)], f"{name}:{port}: {identity}.crt was not renewed"
        # Prometheus and the exporters read the files again on their own schedule at
        # worst; everything here must present the new one within seconds.
        deadline = time.monotonic() + 30
        while (seen := wire_serial(name, port, tls)) != new and time.monotonic() < deadline:
            time.sleep(1)
        assert seen == new, f"{name}:{port} still presents serial {seen}, the file has {new}"
    assert psql(node(PRIMARY), "SELECT pg_postmaster_start_time()") == started, "restarted"


def test_no_plaintext_password_in_the_servers_statistics_or_logs() -> None:
    """Roles get SCRAM verifiers computed on the controller: pg_stat_statements (readable
    by every pg_read_all_stats member) and the server log hold no password."""
    for name in (PRIMARY, REPLICA):
        host = node(name)
        texts = psql(host, "SELECT string_agg(query, ' ') FROM pg_stat_statements", db="mdus_db")
        assert host.run("ls /var/log/postgresql/15-main/ | grep -q .").rc == 0, name
        for secret in SECRETS:
            assert lab_secret(secret) not in texts, f"{secret} in pg_stat_statements on {name}"
            found = host.run("grep -a -r -F -q -e %s /var/log/postgresql", lab_secret(secret))
            assert found.rc == 1, f"{secret} in the server log of {name} (grep rc {found.rc})"
