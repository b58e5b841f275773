"""The Mitogen strategy shim: the collection directories are listed once per run, and each
worker hands Mitogen exactly the list its own planner would have walked for."""

from __future__ import annotations

import inspect
from pathlib import Path

import ansible.collections.list
import ansible_mitogen.planner
import pytest
from ansible.plugins.loader import init_plugin_loader

from tests.modload import load_module

ROOT = Path(__file__).parents[2]
init_plugin_loader()  # as ansible-playbook does before it loads a strategy
shim = load_module("mdus_mitogen_linear", ROOT / "plugins/strategy/mitogen_linear.py")


class Invocation:
    """The one attribute of Mitogen's Invocation that _load_collections touches."""

    def __init__(self) -> None:
        self._extra_sys_paths: set[str] = set()


def test_the_planner_gets_every_collection_directory() -> None:
    invocation = Invocation()
    ansible_mitogen.planner._load_collections(invocation)
    walked = {p.decode("utf-8") for p in ansible.collections.list.list_collection_dirs()}
    assert invocation._extra_sys_paths == walked
    assert any(p.endswith("community/postgresql") for p in walked)


def test_a_worker_does_not_walk_the_collections_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def walk(*_args: object, **_kwargs: object) -> list[bytes]:
        raise AssertionError("the collection directories were walked in a worker")

    monkeypatch.setattr(ansible.collections.list, "list_collection_dirs", walk)
    invocation = Invocation()
    ansible_mitogen.planner._load_collections(invocation)
    assert set(shim.COLLECTION_DIRS) == invocation._extra_sys_paths


def test_mitogen_still_looks_the_function_up_by_name() -> None:
    # A Mitogen release that inlined the walk would leave the shim's function unused.
    assert "_load_collections(invocation)" in inspect.getsource(ansible_mitogen.planner.invoke)
    assert ansible_mitogen.planner._load_collections is shim._load_collections
