"""An instance's step timeline, as bars a page draws: one row per journal position, one
bar per attempt of a step from its start to its end, the waits between them, sleeps and
waits for events from when they began to when they ended (or still running, to now).

Pure: it turns the instance's status (`step_view`s, as the API shows them) into rows of
bars placed on a 0-1000 scale, with the text a pointer hovering over a bar shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCALE = 1000
"""Bars are placed on 0..SCALE (an SVG viewBox width)."""

MIN_WIDTH = 4
"""A bar shorter than this (a step that took under a millisecond) is drawn this wide."""


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    kind: str
    """ok, error, retry-wait, sleep, wait, pending, mark: the CSS class that colours it."""

    title: str
    """What hovering over it shows (errors name and message)."""

    open_ended: bool = False
    """It goes on past the right edge (a sleep or a wait not over yet)."""


@dataclass(frozen=True, slots=True)
class Row:
    position: int
    kind: str
    name: str
    state: str
    attempts: int
    bars: list[Bar]


@dataclass(frozen=True, slots=True)
class Timeline:
    start_ms: int
    end_ms: int
    rows: list[Row]


def when(ms: int | None) -> str:
    """A time for people (UTC, to the millisecond), '-' for none."""
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):  # far future (a clamped timer)
        return f"{ms} ms"


def duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    if ms < 7_200_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def build(status: dict[str, Any], now_ms: int) -> Timeline:
    """The timeline of an instance (`InstanceStatus.to_dict()`, steps included)."""
    start = status["created_at_ms"]
    finished = status["finished_at_ms"]
    ends = [start + 1]
    for step in status["steps"]:
        ends += [t for t in (step["started_at_ms"], step["finished_at_ms"]) if t is not None]
        ends += [a["finished_at_ms"] for a in step.get("attempt_history", [])]
    end = max([finished] if finished is not None else [*ends, now_ms])
    scale = _Scale(start, end)
    rows = [Row(step["position"], step["kind"], step["name"], step["state"],
                step["attempts"], _bars(step, scale, now_ms))
            for step in status["steps"]]
    return Timeline(start, end, rows)


@dataclass(frozen=True, slots=True)
class _Scale:
    start: int
    end: int

    def place(self, begin: int, stop: int | None, kind: str, title: str) -> Bar:
        """A bar from `begin` to `stop` (None or past the end: on past the right edge)."""
        start, end = self.start, self.end
        open_ended = stop is None or stop > end
        stop = end if open_ended or stop is None else stop
        span = max(1, end - start)
        x = (min(max(begin, start), end) - start) / span * SCALE
        width = max(MIN_WIDTH, (stop - max(begin, start)) / span * SCALE)
        x = min(x, SCALE - MIN_WIDTH)
        return Bar(round(x, 2), round(min(width, SCALE - x), 2), kind, title, open_ended)


def _bars(step: dict[str, Any], scale: _Scale, now_ms: int) -> list[Bar]:
    kind, started, finished = step["kind"], step["started_at_ms"], step["finished_at_ms"]
    wake = step["wake_at_ms"]
    if kind == "do":
        return _attempt_bars(step, scale)
    if kind == "sleep":
        title = (f"slept {duration(finished - started)}" if finished is not None
                 else f"sleeping until {when(wake)}")
        return [scale.place(started, finished if finished is not None else wake, "sleep", title)]
    if kind == "event":
        if finished is not None:
            error = step["error"]
            title = (f"waited {duration(finished - started)}: "
                     + (f"{error['name']}: {error['message']}" if error else "event arrived"))
            return [scale.place(started, finished, "error" if error else "wait", title)]
        return [scale.place(started, max(now_ms, started), "wait",
                      f"waiting for an event until {when(wake)}")]
    error = step["error"]
    title = f"{kind} {step['name']}" + (f": {error['name']}: {error['message']}" if error else "")
    return [scale.place(started, finished or started, "error" if error else "mark", title)]


def _attempt_bars(step: dict[str, Any], scale: _Scale) -> list[Bar]:
    bars: list[Bar] = []
    for attempt in step.get("attempt_history", []):
        took = duration(attempt["finished_at_ms"] - attempt["started_at_ms"])
        error = attempt["error"]
        if error is None:
            title = f"attempt {attempt['attempt']}: ok, took {took}"
        else:
            title = f"attempt {attempt['attempt']}: {error['name']}: {error['message']} ({took})"
        bars.append(scale.place(attempt["started_at_ms"], attempt["finished_at_ms"],
                          "ok" if error is None else "error", title))
        delay = attempt["retry_delay_ms"]
        if delay is not None:
            bars.append(scale.place(attempt["finished_at_ms"], attempt["finished_at_ms"] + delay,
                              "retry-wait", f"retry {attempt['attempt'] + 1} after "
                              f"{duration(delay)}"))
    if not bars and step["state"] == "pending":
        bars.append(scale.place(step["started_at_ms"], None, "pending", "running"))
    return bars
