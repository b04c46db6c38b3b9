"""Durations as workflows write them: `250ms`, `30s`, `5m`, `1h`, `1d`, or `1h30m`."""

from __future__ import annotations

import re

#: The grammar, shared with the JSON Schema's `duration` definition.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_FULL = re.compile(DURATION_PATTERN)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError naming the text when it is not one."""
    if not isinstance(text, str) or not _FULL.match(text):
        raise ValueError(f"{text!r} is not a duration; write e.g. 250ms, 30s, 5m, 1h, 1d or 1h30m")
    return sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest duration string for a number of seconds (`90` -> `1m30s`)."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
