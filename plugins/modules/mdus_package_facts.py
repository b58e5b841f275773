#!/usr/bin/python3
"""Ansible module: the installed Debian packages as ansible_facts.packages, from dpkg.

The shape of ansible.builtin.package_facts (manager apt): each installed package name maps
to a list of {name, version, arch, category, source}. package_facts builds python-apt's
whole cache (every package of the mirror's lists, 0.7 s of CPU on a lab host) to list the
~200 installed ones; dpkg-query reads only dpkg's status file (milliseconds). The roles read
the names and versions before they install anything, once per host and run.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mdus_package_facts
short_description: Installed Debian packages as ansible_facts.packages (dpkg-query)
description:
  - Reads dpkg's status with dpkg-query and returns the packages in state installed, in the
    shape of ansible.builtin.package_facts (manager apt). Never changes anything.
options: {}
"""

FORMAT = "${db:Status-Status}\\t${Package}\\t${Version}\\t${Architecture}\\t${Section}\\n"


def parse(output: str) -> dict[str, list[dict[str, Any]]]:
    """dpkg-query lines (status, name, version, arch, section) -> package_facts' dict."""
    packages: dict[str, list[dict[str, Any]]] = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or fields[0] != "installed":
            continue
        _, name, version, arch, section = fields
        packages.setdefault(name, []).append(
            {"name": name, "version": version, "arch": arch, "category": section, "source": "apt"}
        )
    return packages


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    dpkg_query = module.get_bin_path("dpkg-query", required=True)
    rc, out, err = module.run_command([dpkg_query, "-W", "-f", FORMAT])
    if rc != 0:
        module.fail_json(msg=f"dpkg-query failed: {err.strip()}", rc=rc)
    module.exit_json(changed=False, ansible_facts={"packages": parse(out)})


if __name__ == "__main__":
    main()
