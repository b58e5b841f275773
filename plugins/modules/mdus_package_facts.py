#!/usr/bin/python3
"""Ansible module: the installed Debian packages as ansible_facts.mdus_packages, from dpkg.

Each installed package name maps to its version. ansible.builtin.package_facts builds
python-apt's whole cache (every package of the mirror's lists, 0.7 s of CPU on a lab host)
to list the ~200 installed ones; dpkg-query reads only dpkg's status file (milliseconds).
The shape is flat on purpose: Ansible deep-copies every fact of a host each time it
computes that host's variables (once per task), and package_facts' shape (a list of five-key
dicts per package) made that copy ~7x dearer (~1 s of the controller's time in a lab
re-run). The roles read the names and versions before they install anything, once per host
and run.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mdus_package_facts
short_description: Installed Debian packages as ansible_facts.mdus_packages (dpkg-query)
description:
  - Reads dpkg's status with dpkg-query and returns the packages in state installed as
    ansible_facts.mdus_packages, a mapping of package name to version (where one package
    is installed for two architectures, the first one dpkg lists). Never changes anything.
options: {}
"""

FORMAT = "${db:Status-Status}\\t${Package}\\t${Version}\\n"


def parse(output: str) -> dict[str, str]:
    """dpkg-query lines (status, name, version) -> {name: version} of installed packages."""
    packages: dict[str, str] = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] != "installed":
            continue
        _, name, version = fields
        packages.setdefault(name, version)
    return packages


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    dpkg_query = module.get_bin_path("dpkg-query", required=True)
    rc, out, err = module.run_command([dpkg_query, "-W", "-f", FORMAT])
    if rc != 0:
        module.fail_json(msg=f"dpkg-query failed: {err.strip()}", rc=rc)
    module.exit_json(changed=False, ansible_facts={"mdus_packages": parse(out)})


if __name__ == "__main__":
    main()
