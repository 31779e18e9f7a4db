"""The dashboard's step timeline: one bar per attempt, the waits between, open sleeps."""

from __future__ import annotations

from typing import Any

from host.http.ui import timeline


def _step(position: int, kind: str, name: str, state: str, started: int,
          finished: int | None, **extra: Any) -> dict[str, Any]:
    return {"position": position, "kind": kind, "name": name, "state": state,
            "attempts": extra.pop("attempts", 1), "started_at_ms": started,
            "finished_at_ms": finished, "wake_at_ms": extra.pop("wake_at_ms", None),
            "error": extra.pop("error", None), "attempt_history": extra.pop("history", [])}


def test_a_retried_step_has_a_bar_per_attempt_and_per_wait() -> None:
    error = {"name": "Flaky", "message": "no"}
    history = [
        {"attempt": 1, "state": "error", "started_at_ms": 0, "finished_at_ms": 100,
         "error": error, "retry_delay_ms": 400},
        {"attempt": 2, "state": "ok", "started_at_ms": 500, "finished_at_ms": 1000,
         "error": None, "retry_delay_ms": None},
    ]
    status = {"created_at_ms": 0, "finished_at_ms": 1000, "steps": [
        _step(0, "do", "charge", "ok", 0, 1000, attempts=2, history=history)]}
    [row] = timeline.build(status, now_ms=5000).rows
    assert [("error", 0.0, 100.0), ("retry-wait", 100.0, 400.0), ("ok", 500.0, 500.0)] == [
        (bar.kind, bar.x, bar.width) for bar in row.bars]
    assert "attempt 1: Flaky: no (100 ms)" == row.bars[0].title
    assert "retry 2 after 400 ms" == row.bars[1].title


def test_a_sleep_not_over_runs_off_the_right_edge() -> None:
    status = {"created_at_ms": 0, "finished_at_ms": None, "steps": [
        _step(0, "do", "a", "ok", 0, 1, history=[
            {"attempt": 1, "state": "ok", "started_at_ms": 0, "finished_at_ms": 1,
             "error": None, "retry_delay_ms": None}]),
        _step(1, "sleep", "nap", "pending", 1, None, attempts=0, wake_at_ms=10_000_000)]}
    built = timeline.build(status, now_ms=1000)
    assert 1000 == built.end_ms  # now, not the far wake time
    [bar] = built.rows[1].bars
    assert (True, "sleep", 1000.0) == (bar.open_ended, bar.kind, bar.x + bar.width)
    assert bar.title.startswith("sleeping until 1970-01-01 02:46:40")
    assert timeline.MIN_WIDTH == built.rows[0].bars[0].width  # 1 ms of 1000: drawn wider
