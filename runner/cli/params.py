"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    # Generic (value, input) in newer click; subscripted for the checker only, since click 8.1,
    # which pyproject.toml allows, cannot be subscripted at run time.
    _ParamType = click.ParamType[float, object]
else:
    _ParamType = click.ParamType

# Plain seconds, as the flags took before they took durations: `30`, `2.5`.
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


#: The longest duration a flag takes: a timer much longer is a mistake, and past what the
#: event loop can schedule.
MAX_DURATION_SECONDS = 365 * 86_400


class Duration(_ParamType):
    """A duration flag: the YAML's syntax (`250ms`, `30s`, `5m`, `1h30m`) or plain seconds
    (`30`, `2.5`), as float seconds from `minimum` to MAX_DURATION_SECONDS."""

    name = "duration"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds in `value`; a usage error naming the flag and the syntax otherwise."""
        from runner.spec.durations import format_duration, parse_duration

        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)  # a default given in seconds
        else:
            text = str(value).strip()
            try:
                seconds = float(text) if _SECONDS.fullmatch(text) else parse_duration(text)
            except ValueError:
                self.fail(
                    f"{_shown(value)} is not a duration; write e.g. 250ms, 30s, 5m, 1h, 1d or "
                    "1h30m, or a number of seconds",
                    param,
                    ctx,
                )
            except OverflowError:  # more digits than a float holds
                seconds = math.inf
        if not self.minimum <= seconds <= MAX_DURATION_SECONDS:
            self.fail(
                f"{_shown(value)} is not between {format_duration(self.minimum)} and "
                f"{format_duration(MAX_DURATION_SECONDS)}",
                param,
                ctx,
            )
        return seconds


def _shown(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 40 else f"{text[:39]}…"
