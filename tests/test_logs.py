"""Repeated warnings are held back: the first shows, then one per interval with a count."""

import logging

from app.logs import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(message: str, level: int = logging.ERROR, name: str = "asyncio") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def shown(log_filter: RepeatFilter, message: str, level: int = logging.ERROR) -> dict | None:
    """The record's extra fields if the filter lets it through, else None."""
    entry = record(message, level)
    return getattr(entry, "fields", {}) if log_filter.filter(entry) else None


def test_a_repeated_error_shows_once_per_interval_with_the_count_held_back() -> None:
    clock = Clock()
    log_filter = RepeatFilter(10.0, clock=clock)
    assert shown(log_filter, "socket.accept() out of system resource") == {}
    held = [shown(log_filter, "socket.accept() out of system resource") for _ in range(2047)]
    assert held == [None] * 2047
    assert shown(log_filter, "another message") == {}
    clock.now += 9.9
    assert shown(log_filter, "socket.accept() out of system resource") is None
    clock.now += 0.1
    assert shown(log_filter, "socket.accept() out of system resource") == {"suppressed": 2048}
    assert shown(log_filter, "socket.accept() out of system resource") is None
    clock.now += 10
    assert shown(log_filter, "socket.accept() out of system resource") == {"suppressed": 1}


def test_info_lines_such_as_the_access_log_are_never_held_back() -> None:
    log_filter = RepeatFilter(10.0, clock=Clock())
    assert all(shown(log_filter, "request", logging.INFO) == {} for _ in range(100))


def test_the_filter_tracks_a_bounded_number_of_messages() -> None:
    clock = Clock()
    log_filter = RepeatFilter(10.0, clock=clock)
    for n in range(RepeatFilter.MAX_TRACKED + 10):
        assert shown(log_filter, f"unique {n}") == {}
    assert len(log_filter._seen) == RepeatFilter.MAX_TRACKED
    clock.now += 11
    assert shown(log_filter, "one more") == {}
    assert len(log_filter._seen) == 1
