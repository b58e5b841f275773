"""Ansible's default screen output, minus the specification printed around a refused input.

A role argument-spec failure carries the role's whole specification and the validation
context in its result: hundreds of lines per host around the one-line reason. This
callback drops those two keys from failed results and prints everything else exactly as
the default callback does, so the operator reads the reason first.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = """
    name: mdus
    type: stdout
    short_description: default output without argument specifications around a refusal
    description:
        - The default stdout callback; failed results lose argument_spec_data and
          validate_args_context (argument_errors and msg stay).
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout in configuration
"""

NOISE = ("argument_spec_data", "validate_args_context")


def prune(result: dict[str, Any]) -> dict[str, Any]:
    """Remove the specification keys from a task result (in place) and return it."""
    for key in NOISE:
        result.pop(key, None)
    return result


class CallbackModule(DefaultCallback):
    """Default output; a refused argument spec prints its errors only."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "mdus"

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        prune(result._result)
        super().v2_runner_on_failed(result, ignore_errors)
