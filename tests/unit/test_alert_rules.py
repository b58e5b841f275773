"""Alert rules and Alertmanager configuration of roles/monitoring_server, proven by promtool.

The rules template is rendered with the role's defaults (Ansible's own templating), then
`promtool check rules` and `promtool test rules` run the fixtures in tests/unit/promtool/.
Every alert must have a case where it fires and one where it stays silent; every alert
carries severity, summary, description and a runbook_url whose page exists.
promtool and amtool come from Debian's prometheus and prometheus-alertmanager packages
(.ci/run installs them); without them these tests fail, they do not skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles/monitoring_server"
FIXTURES = Path(__file__).parent / "promtool"
RUNBOOKS = REPO / "docs/runbooks"
SEVERITIES = {"critical", "warning", "info"}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install prometheus prometheus-alertmanager"
    return path


def role_vars(**overrides: Any) -> dict[str, Any]:
    variables: dict[str, Any] = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    # vars/main.yml derives values with Jinja: let the Templar evaluate them, as Ansible does
    derived = yaml.safe_load((ROLE / "vars/main.yml").read_text())
    variables.update(
        {k: trust_as_template(v) if isinstance(v, str) else v for k, v in derived.items()}
    )
    variables.update(ansible_managed="Ansible managed", inventory_hostname="mon1")
    variables.update(overrides)
    return variables


def render(template: str, **overrides: Any) -> str:
    templar = Templar(loader=DataLoader(), variables=role_vars(**overrides))
    text = (ROLE / "templates" / template).read_text()
    return str(templar.template(trust_as_template(text)))


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False, timeout=120)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("promtool")
    (directory / "mdus.rules.yml").write_text(render("mdus.rules.yml.j2"))
    for fixture in FIXTURES.glob("*.yml"):
        shutil.copy(fixture, directory / fixture.name)
    return directory


@pytest.fixture(scope="module")
def rules(rules_dir: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load((rules_dir / "mdus.rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_check_rules(rules_dir: Path) -> None:
    proc = run(tool("promtool"), "check", "rules", str(rules_dir / "mdus.rules.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.yml")))
def test_promtool_test_rules(rules_dir: Path, fixture: str) -> None:
    proc = run(tool("promtool"), "test", "rules", fixture, cwd=rules_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_fires_and_stays_silent(rules: list[dict[str, Any]]) -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for fixture in FIXTURES.glob("*.yml"):
        for case in yaml.safe_load(fixture.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                (fires if expected else silent).add(check["alertname"])
                for alert in expected:
                    assert alert.get("exp_labels", {}).get("severity"), check
                    assert alert.get("exp_annotations", {}).get("runbook_url"), check
    names = {rule["alert"] for rule in rules}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - silent == set(), "alerts never shown to stay silent"
    assert (fires | silent) - names == set(), "tests for alerts that do not exist"


def test_every_alert_is_documented(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbooks/{name}.md", name
        assert (RUNBOOKS / f"{name}.md").is_file(), f"no runbook page for {name}"


def test_thresholds_come_from_variables(tmp_path: Path) -> None:
    """The lab lowers thresholds and for durations through variables: they must reach the rules."""
    text = render(
        "mdus.rules.yml.j2",
        monitoring_server_alert_lock_wait_seconds=5,
        monitoring_server_alert_lock_wait_for="0s",
        monitoring_server_alert_long_query_seconds=7,
        monitoring_server_runbook_base_url="https://git.example.org/runbooks/",
    )
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert rules["PostgresLockWait"]["expr"].endswith("> 5")
    assert rules["PostgresLockWait"]["for"] == "0s"
    assert rules["PostgresLongRunningQuery"]["expr"].endswith("> 7")
    url = rules["PostgresLockWait"]["annotations"]["runbook_url"]
    assert url == "https://git.example.org/runbooks/PostgresLockWait.md"
    (tmp_path / "r.yml").write_text(text)
    proc = run(tool("promtool"), "check", "rules", str(tmp_path / "r.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dr_drill_alert_is_off_by_default_and_fires_when_on(
    tmp_path: Path, rules: list[dict[str, Any]]
) -> None:
    """DrDrillStale exists only with monitoring_server_alert_dr_drill_max_age_days > 0;
    then it fires when no drill passed within the window, or none ever ran."""
    assert "DrDrillStale" not in {rule["alert"] for rule in rules}
    (tmp_path / "mdus.rules.yml").write_text(
        render("mdus.rules.yml.j2", monitoring_server_alert_dr_drill_max_age_days=7)
    )
    fixture = Path(__file__).parent / "promtool_optional" / "dr_drill.yml"
    shutil.copy(fixture, tmp_path / fixture.name)
    proc = run(tool("promtool"), "test", "rules", fixture.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (RUNBOOKS / "DrDrillStale.md").is_file()


LAB_VARS = yaml.safe_load((REPO / "inventories/lab/group_vars/monitoring.yml").read_text())
EMAIL_VARS = {
    "monitoring_server_alertmanager_receivers": [
        {"name": "dba-mail", "email_configs": [{"to": "dba@example.org", "send_resolved": True}]},
        {"name": "pager", "webhook_configs": [{"url": "https://pager.example.org/hook"}]},
    ],
    "monitoring_server_alertmanager_route_receiver": "dba-mail",
    "monitoring_server_alertmanager_routes": [
        {"receiver": "pager", "matchers": ['severity="critical"']}
    ],
    "monitoring_server_alertmanager_smtp": {
        "smarthost": "mail.example.org:587",
        "from": "alerts@example.org",
        "auth_username": "alerts",
        "auth_password": "secret",
        "require_tls": True,
    },
}


@pytest.mark.parametrize(
    "overrides", [{}, LAB_VARS, EMAIL_VARS], ids=["defaults", "lab", "email-and-pager"]
)
def test_amtool_check_config(tmp_path: Path, overrides: dict[str, Any]) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(render("alertmanager.yml.j2", **overrides))
    proc = run(tool("amtool"), "check-config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_config_targets_from_inventory(tmp_path: Path) -> None:
    groups = {
        "postgres": ["pg1", "pg2"],
        "pgbackrest_repo": ["repo1"],
        "monitoring": ["mon1"],
    }
    hostvars = {"pg1": {"ansible_host": "10.0.0.11"}, "pg2": {}, "repo1": {}, "mon1": {}}
    text = render("prometheus.yml.j2", groups=groups, hostvars=hostvars)
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        name: {(s["targets"][0], s["labels"]["instance"]) for s in job["static_configs"]}
        for name, job in jobs.items()
    }
    assert targets["postgres"] == {("10.0.0.11:9187", "pg1"), ("pg2:9187", "pg2")}
    assert {i for _, i in targets["node"]} == {"pg1", "pg2", "repo1", "mon1"}
    assert targets["prometheus"] == {("mon1:9090", "mon1")}
    rules_glob = tmp_path / "rules"
    rules_glob.mkdir()
    (rules_glob / "mdus.rules.yml").write_text(render("mdus.rules.yml.j2"))
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/rules", str(rules_glob)))
    proc = run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


# exporter-toolkit's documented example hash (user prometheus, password "test"): a test
# fixture, not a credential of any deployment.
EXAMPLE_BCRYPT = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a host certificate signed by it, with openssl."""
    ca_key, ca, key, csr, crt = (
        directory / n for n in ("ca.key", "ca.crt", "h.key", "h.csr", "h.crt")
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-subj", "/CN=test CA", "-days", "2"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=mon1"],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "2",
        ],
    ):
        proc = run(tool("openssl"), *map(str, cmd))
        assert proc.returncode == 0, proc.stderr
    return ca, crt, key


def test_mutual_tls_and_basic_auth_configs_are_valid(tmp_path: Path) -> None:
    """Production mode: Prometheus' web config (TLS, client CA, basic auth) passes
    `promtool check web-config`; the scrape configs carry the client certificate."""
    ca, crt, key = _tls_files(tmp_path)
    tls = {
        "monitoring_server_web_tls_cert_file": str(crt),
        "monitoring_server_web_tls_key_file": str(key),
        "monitoring_server_web_tls_client_ca_file": str(ca),
        "monitoring_server_web_basic_auth_users": {"prometheus": EXAMPLE_BCRYPT},
        "monitoring_server_scrape_scheme": "https",
        "monitoring_server_scrape_ca_file": str(ca),
        "monitoring_server_scrape_cert_file": str(crt),
        "monitoring_server_scrape_key_file": str(key),
    }
    web = tmp_path / "web-config.yml"
    web.write_text(render("web-config.yml.j2", **tls))
    server = yaml.safe_load(web.read_text())["tls_server_config"]
    assert server["client_auth_type"] == "RequireAndVerifyClientCert"
    assert server["client_ca_file"] == str(ca) and server["min_version"] == "TLS12"
    proc = run(tool("promtool"), "check", "web-config", str(web))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    groups = {"postgres": ["pg1"], "monitoring": ["mon1"]}
    hostvars: dict[str, dict[str, str]] = {"pg1": {}, "mon1": {}}
    text = render("prometheus.yml.j2", groups=groups, hostvars=hostvars, **tls)
    jobs = {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}
    for name in ("postgres", "node", "prometheus"):
        assert jobs[name]["scheme"] == "https", name
        assert jobs[name]["tls_config"] == {
            "ca_file": str(ca),
            "cert_file": str(crt),
            "key_file": str(key),
        }, name
    assert jobs["alertmanager"].get("scheme", "http") == "http"  # loopback only
    (tmp_path / "prometheus.yml").write_text(text)
    proc = run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
