"""Digest of a `make test` log: seconds per stage, then the failed tests and tasks.

Usage: python3 scripts/ci_digest.py LOG   (stdlib only: runs before and without the venv)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
FRAME = re.compile(r"^\s*[│|]\s?")
STAGE = re.compile(r"^\[(lint|syntax|molecule)\] (?:scenario )?(\S+)")
TOOK = re.compile(r"^\[molecule\] scenario (\S+) took (\d+) s")
STAMP = re.compile(r"\w+day \d{2} \w+ \d{4}\s+(\d{2}):(\d{2}):(\d{2})")
FAILURE = re.compile(
    r"(^FAILED |^ERROR |^E\s{2,}|AssertionError|fatal: \[|Verifier tests failed|failed=[1-9])"
)


def clean(line: str) -> str:
    return FRAME.sub("", ANSI.sub("", line)).rstrip()


def seconds(match: re.Match[str]) -> int:
    hours, minutes, secs = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + secs


def stages(lines: list[str]) -> list[tuple[str, int]]:
    """Molecule scenarios: the Makefile's "took N s", else first to last task timestamp."""
    took = [(m.group(1), int(m.group(2))) for m in map(TOOK.match, lines) if m]
    if took:
        return took
    spans: dict[str, list[int]] = {}
    current = ""
    for line in lines:
        marker = STAGE.match(line)
        if marker and marker.group(1) == "molecule":
            current = marker.group(2)
            spans.setdefault(current, [])
        stamp = STAMP.search(line)
        if current and stamp:
            spans[current].append(seconds(stamp))
    result = []
    for name, stamps in spans.items():
        if stamps:
            span = stamps[-1] - stamps[0]
            result.append((name, span if span >= 0 else span + 86400))
    return result


def main(path: str) -> int:
    lines = [clean(x) for x in Path(path).read_text(errors="replace").splitlines()]
    for name, span in stages(lines):
        print(f"  molecule {name}: {span // 60} min {span % 60:02d} s")
    failures = [x for x in lines if FAILURE.search(x)]
    if failures:
        print("[ci] failures (last 60 lines that name one)")
        for line in failures[-60:]:
            print("  " + line[:200])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
