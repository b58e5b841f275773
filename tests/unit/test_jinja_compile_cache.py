"""The compile cache (plugins/callback/jinja_compile_cache.py) renders exactly what Ansible
renders without it, reuses a compiled template only under the same key, and never uses a
directory others can write."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible._internal._templating._jinja_bits import _TemplateCompileContext
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.modload import load_module

cache = load_module(
    "jinja_compile_cache", Path(__file__).parents[2] / "plugins/callback/jinja_compile_cache.py"
)

VARIABLES: dict[str, Any] = {
    "hosts": ["db1", "db2", "db3"],
    "port": 5432,
    "settings": {"work_mem": "4MB", "shared_buffers": "1GB"},
    "name": "mdus_pg1",
    "empty": "",
}
TEMPLATES = [
    "{{ hosts | join(',') }}",
    "{{ hosts | map('upper') | list }}",
    "{{ port + 1 }}",
    "{{ settings | dict2items | map(attribute='key') | sort }}",
    "{{ name | regex_replace('^mdus_(.*)$', '\\\\1') }}",
    "{{ 'x' if empty is defined and empty | length == 0 else 'y' }}",
    "{% for h in hosts %}{{ h }}:{{ port }} {% endfor %}",
    "{{ hosts is not string }}",
    "{{ 'a,b' | split(',') }}",
    "{% filter upper %}{{ name }}{% endfilter %}",
]


@pytest.fixture
def templar(tmp_path: Path) -> Iterator[tuple[Templar, Path]]:
    directory = tmp_path / "jinja"
    assert cache.usable_dir(directory)
    cache.install(directory)
    try:
        yield Templar(loader=DataLoader(), variables=VARIABLES), directory
    finally:
        cache.uninstall()


def render_all(templar: Templar) -> list[Any]:
    return [templar.template(trust_as_template(source)) for source in TEMPLATES]


# What Ansible renders without the cache (computed before any test installs it).
EXPECTED = render_all(Templar(loader=DataLoader(), variables=VARIABLES))


def counting_compiles(calls: list[str]) -> Any:
    """Record the sources the real compile is asked for (the cache misses)."""
    original = cache._state["original"]

    def counting(env: Any, source: Any, *args: Any) -> Any:
        calls.append(str(source))
        return original(env, source, *args)

    return counting


def test_cached_renders_equal_ansible_without_the_cache(
    templar: tuple[Templar, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = EXPECTED
    cached, directory = templar
    cold: list[str] = []
    monkeypatch.setitem(cache._state, "original", counting_compiles(cold))
    assert render_all(cached) == expected
    assert sorted(set(cold) & set(TEMPLATES)) == sorted(TEMPLATES), "compiled through the cache"
    written = sorted(p.name for p in directory.iterdir())
    assert len(written) == len(set(cold))
    # A new worker or a later run: only the files, read back instead of compiling.
    cache._memory.clear()
    warm: list[str] = []
    monkeypatch.setitem(cache._state, "original", counting_compiles(warm))
    assert render_all(Templar(loader=DataLoader(), variables=VARIABLES)) == expected
    assert warm == []


def test_backslash_escaping_is_part_of_the_key(templar: tuple[Templar, Path]) -> None:
    env = templar[0].environment
    source = "{{ name | regex_replace('a', '\\1') }}"
    with _TemplateCompileContext(escape_backslashes=True):
        escaped = cache.cache_key(env, source, None, None, False)
    with _TemplateCompileContext(escape_backslashes=False):
        plain = cache.cache_key(env, source, None, None, False)
    assert escaped and plain and escaped != plain


def test_a_changed_filter_changes_the_key(templar: tuple[Templar, Path]) -> None:
    env = templar[0].environment
    env.filters["mdus_probe"] = lambda value: value
    before = cache.cache_key(env, "{{ 1 | mdus_probe }}", None, None, False)
    env.filters["mdus_probe"] = lambda value: value * 2
    after = cache.cache_key(env, "{{ 1 | mdus_probe }}", None, None, False)
    assert before != after


@pytest.mark.parametrize(
    "source",
    ["{{ 59 | random }}", "{{ hosts | ansible.builtin.shuffle }}", "{{ 'x' | password_hash }}"],
)
def test_filters_with_a_new_result_each_call_are_never_cached(
    templar: tuple[Templar, Path], source: str
) -> None:
    assert cache.cache_key(templar[0].environment, source, None, None, False) is None


def test_a_corrupt_file_is_compiled_again(templar: tuple[Templar, Path]) -> None:
    cached, directory = templar
    expected = EXPECTED
    render_all(cached)
    for path in directory.iterdir():
        path.write_bytes(b"not marshal data")
    cache._memory.clear()
    assert render_all(Templar(loader=DataLoader(), variables=VARIABLES)) == expected
    assert all(path.read_bytes() != b"not marshal data" for path in directory.iterdir())


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_directory_others_can_write_is_not_used(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(mode)
    assert not cache.usable_dir(directory)
    assert cache.usable_dir(tmp_path / "own")
    assert (tmp_path / "own").stat().st_mode & 0o777 == 0o700


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDUS_JINJA_CACHE", "0")
    assert not cache.enabled()
    monkeypatch.delenv("MDUS_JINJA_CACHE")
    assert cache.enabled()
    monkeypatch.setenv("MDUS_JINJA_CACHE_DIR", os.fspath(Path("/srv/cache")))
    assert cache.cache_dir() == Path("/srv/cache")


def test_a_full_directory_starts_again_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "jinja"
    assert cache.usable_dir(directory)
    for index in range(5):
        (directory / f"{index:064x}").write_bytes(b"x")
    monkeypatch.setattr(cache, "MAX_FILES", 5)
    assert cache.prune(directory) == 5
    (directory / f"{5:064x}").write_bytes(b"x")
    assert cache.prune(directory) == 0
    assert list(directory.iterdir()) == []
