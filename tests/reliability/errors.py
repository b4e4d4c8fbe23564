"""What a failed run must tell the user: one line that names the problem, and nothing secret."""

from __future__ import annotations

import re

from tests.reliability.harness import BASIC_CREDENTIAL, JWT_PATTERN, PASSWORD, RunResult

_LOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ \| [A-Z]+\s*\| \S+\s*\| ")
_EXCEPTION_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit)\w*: ")


def error_lines(result: RunResult) -> list[str]:
    """What the user is told: the tap's ERROR/CRITICAL log lines and its very last line."""
    lines = [line for line in result.tap_stderr.splitlines()
             if line.strip() and "METRIC: " not in line]
    assert lines, f"the tap printed nothing at all\n{result.describe()}"
    last = _EXCEPTION_PREFIX.sub("", _LOG_PREFIX.sub("", lines[-1].strip()))
    return [*result.log(), last]


def assert_one_clear_line(result: RunResult, *, names: tuple[str, ...],
                          says: tuple[str, ...] = ()) -> str:
    """The run failed, and one error line names all of ``names`` and says one of ``says``.

    Generic lines the SDK adds ("Config validation failed", "An unhandled error occurred while
    syncing ...") may surround it; tracebacks are checked by separate tests.
    """
    assert result.tap_rc not in (0, None), f"the tap did not fail\n{result.describe()}"
    candidates = error_lines(result)

    def clear(line: str) -> bool:
        lowered = line.lower()
        return all(name.lower() in lowered for name in names) and (
            not says or any(word.lower() in lowered for word in says))

    matching = [line for line in candidates if clear(line)]
    assert matching, (f"no error line names all of {names} and says one of {says}: "
                      f"{candidates}\n{result.describe()}")
    line = matching[0]
    assert PASSWORD not in line
    assert BASIC_CREDENTIAL not in line
    assert not JWT_PATTERN.search(line.encode())
    assert len(line) < 600, f"the error line is a wall of text ({len(line)} chars): {line!r}"
    return line


def has_traceback(result: RunResult) -> bool:
    return "Traceback (most recent call last)" in result.tap_stderr
