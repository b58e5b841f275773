"""The repository probe's command (pgbackrest role, __pgbackrest_info_command) hands
Ansible printable ASCII only: with a wrong passphrase pgBackRest prints undecryptable
bytes on stdout and stderr, and a module result that is not UTF-8 ends the run with
"Refusing to deserialize an invalid UTF8 string" instead of the role's clear refusal
(seen in the lab, depending on the random bytes). The exit status stays pgBackRest's."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import jinja2
import yaml

VARS = Path(__file__).parents[2] / "roles/pgbackrest/vars/main.yml"
FAKE = """#!/bin/bash
printf '[{"status":{"code":99,"message":"[CryptoError] \\xed\\xa0\\x80\\xff\\x01\\x1b end"}}]\\n'
printf 'ERROR: [095]: unable to load info file \\xed\\xa0\\x80\\xfe\\x07 end\\n' >&2
exit 99
"""


def command() -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["quote"] = shlex.quote
    template = yaml.safe_load(VARS.read_text())["__pgbackrest_info_command"]
    return env.from_string(template).render(pgbackrest_stanza="mdus")


def test_probe_output_is_ascii_and_keeps_the_exit_status(tmp_path: Path) -> None:
    fake = tmp_path / "pgbackrest"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["/bin/bash", "-c", f"set -o pipefail; {command()}"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 99
    for stream in (proc.stdout, proc.stderr):
        assert all(byte == 0x0A or 0x20 <= byte <= 0x7E for byte in stream), stream
    assert b'"message":"[CryptoError]  end"' in proc.stdout
    assert b"unable to load info file  end" in proc.stderr
