"""Ansible's default screen output, minus the specification printed around a refused input.

A role argument-spec failure carries the role's whole specification and the validation
context in its result: hundreds of lines per host around the one-line reason. This
callback drops those two keys from failed results and prints everything else exactly as
the default callback does, so the operator reads the reason first. When several hosts
fail one task for the same reason (a bad group variable), the reason is printed once and
every further host gets one line naming the host it matches.
"""

from __future__ import annotations

import json
from typing import Any

from ansible import constants as C
from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = """
    name: mdus
    type: stdout
    short_description: default output without argument specifications around a refusal
    description:
        - The default stdout callback; failed results lose argument_spec_data and
          validate_args_context (argument_errors and msg stay); a failure with the same
          message as an earlier host's in the same task prints as one line.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout in configuration
"""

NOISE = ("argument_spec_data", "validate_args_context")
# Keys that differ between hosts even when they fail for the same reason.
VOLATILE = ("start", "end", "delta", "invocation")


def prune(result: dict[str, Any]) -> dict[str, Any]:
    """Remove the specification keys from a task result (in place) and return it."""
    for key in NOISE:
        result.pop(key, None)
    return result


def same_reason(result: dict[str, Any]) -> str:
    """The failure's content without timings and internals; "" when it has no message."""
    if not result.get("msg"):
        return ""
    kept = {k: v for k, v in result.items() if k not in VOLATILE and not k.startswith("_ansible")}
    return json.dumps(kept, sort_keys=True, default=str)


class CallbackModule(DefaultCallback):
    """Default output; a refused argument spec prints its errors only."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "mdus"

    def __init__(self) -> None:
        super().__init__()
        self._first_failure: dict[tuple[str, str], str] = {}

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        prune(result._result)
        reason = same_reason(result._result)
        key = (str(result._task._uuid), reason)
        host = result._host.get_name()
        first = self._first_failure.setdefault(key, host)
        if reason and first != host and not ignore_errors:
            self._display.display(
                f"fatal: [{host}]: FAILED! => the same reason as [{first}] above",
                color=C.COLOR_ERROR,
                stderr=self.get_option("display_failed_stderr"),
            )
            return
        super().v2_runner_on_failed(result, ignore_errors)
