"""How each model version quotes the sales recorded after it was trained, kept incrementally.

Every version has a watermark: the highest sale id when it was trained. The sales above the
lowest watermark are cut at each watermark into segments, and each segment is kept as its
sufficient statistics, which merge by addition. A version's live accuracy is then the sum of
the segments above its watermark, measured against its line in O(1) (models.line_error).
A refresh folds in only what changed since the last one: the new sales (one aggregate over
their ids), new or dropped watermarks, and the sales deleted since (the deleted_sales table).
So a registry read costs the same at ten sales or ten million.

Each process keeps its own copy and refreshes it at most once per ``refresh_seconds``, in
one snapshot, so that a sale and its deletion are never seen apart.
"""

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import Database
from app.orm import DeletedSale, ModelVersion
from app.schemas.registry import LiveAccuracy
from app.services.aggregates import first_sale_after, newest_sale_id, sums_by_segment
from models import InvalidDataError, SufficientStats
from models.report import line_error

NO_SALES = LiveAccuracy(n_sales=0, rmse=None, bias=None)


@dataclass
class _State:
    shift: tuple[float, int] | None = None
    # Segment start (a watermark) -> statistics of the sales above it, up to the next start.
    segments: dict[int, SufficientStats] = field(default_factory=dict)
    checked_through: int = 0
    deletions_seen: int = 0
    refreshed_at: float = float("-inf")


class LiveAccuracyTracker:
    def __init__(self, db: Database, refresh_seconds: float, forget_after_seconds: float) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        # Deleted sales are purged after this long; a copy older than that is rebuilt.
        self._forget_after = forget_after_seconds
        self._state = _State()
        self._invalid = False
        self._lock = threading.Lock()

    def of(self, versions: Iterable[ModelVersion]) -> dict[int, LiveAccuracy]:
        with self._lock:
            due = time.monotonic() - self._state.refreshed_at >= self._refresh_seconds
            if due or self._invalid:
                with self._db.session(snapshot=True) as session:
                    self._refresh(session)
                self._invalid = False
            return self._measure(versions)

    def invalidate(self) -> None:
        """Make the next read refresh (after this process trained or deleted a version)."""
        self._invalid = True

    # Refreshing

    def _refresh(self, session: Session) -> None:
        state = self._state
        starts = sorted(
            set(session.scalars(select(func.coalesce(ModelVersion.trained_through_sale_id, 0))))
        )
        newest = newest_sale_id(session)
        last_deletion = session.scalar(select(func.coalesce(func.max(DeletedSale.seq), 0))) or 0
        stale = time.monotonic() - state.refreshed_at > self._forget_after
        known = sorted(state.segments)
        added = [s for s in starts if s not in state.segments]
        if stale or state.shift is None or (known and added and added[0] < known[-1]):
            self._rebuild(session, starts, newest, last_deletion)
            return
        try:
            for start in set(known) - set(starts):
                self._drop_segment(start)
            # Deletions before splits: a split reads the segment as it is now, without them.
            self._forget_deleted(session, last_deletion)
            for start in added:
                self._add_segment(session, start)
            self._add_sales(session, newest)
        except InvalidDataError:
            # Sums that no longer describe a set of sales (rounding, or a sale id committed
            # out of order on PostgreSQL): start again from the database.
            self._rebuild(session, starts, newest, last_deletion)
            return
        state.refreshed_at = time.monotonic()

    def _rebuild(self, session: Session, starts: list[int], newest: int, deletions: int) -> None:
        state = _State(checked_through=newest, deletions_seen=deletions)
        if starts:
            state.shift = first_sale_after(session, starts[0])
        if state.shift is not None:
            sums = sums_by_segment(session, starts, starts[0], newest, state.shift)
            state.segments = {start: sums.get(start, self._empty(state)) for start in starts}
        state.refreshed_at = time.monotonic()
        self._state = state

    def _empty(self, state: _State) -> SufficientStats:
        assert state.shift is not None
        return SufficientStats(0, state.shift[0], state.shift[1] / 100.0)

    def _segment_of(self, sale_id: int) -> int | None:
        below = [start for start in self._state.segments if start < sale_id]
        return max(below) if below else None

    def _drop_segment(self, start: int) -> None:
        segments = self._state.segments
        gone = segments.pop(start)
        previous = self._segment_of(start)
        if previous is not None:
            segments[previous] = segments[previous] + gone

    def _add_segment(self, session: Session, start: int) -> None:
        """A new watermark at or above every other: split the last segment there."""
        state = self._state
        assert state.shift is not None
        if start >= state.checked_through:
            state.segments[start] = self._empty(state)
            return
        part = sums_by_segment(session, [start], start, state.checked_through, state.shift)
        tail = self._segment_of(start)
        new = part.get(start, self._empty(state))
        if tail is not None:
            state.segments[tail] = state.segments[tail] - new
        state.segments[start] = new

    def _forget_deleted(self, session: Session, last: int) -> None:
        state = self._state
        deleted = session.execute(
            select(DeletedSale.sale_id, DeletedSale.carats, DeletedSale.price_cents).where(
                DeletedSale.seq > state.deletions_seen, DeletedSale.seq <= last
            )
        )
        for sale_id, carats, cents in deleted:
            segment = self._segment_of(sale_id)
            if segment is not None and sale_id <= state.checked_through:
                one = SufficientStats.from_arrays([carats], [cents / 100.0])
                state.segments[segment] = state.segments[segment] - one
        state.deletions_seen = last

    def _add_sales(self, session: Session, newest: int) -> None:
        state = self._state
        assert state.shift is not None
        sums = sums_by_segment(
            session, list(state.segments), state.checked_through, newest, state.shift
        )
        for start, part in sums.items():
            state.segments[start] = state.segments[start] + part
        state.checked_through = max(state.checked_through, newest)

    # Measuring

    def _measure(self, versions: Iterable[ModelVersion]) -> dict[int, LiveAccuracy]:
        segments = self._state.segments
        above: dict[int, SufficientStats] = {}
        running: SufficientStats | None = None
        for start in sorted(segments, reverse=True):
            running = segments[start] if running is None else running + segments[start]
            above[start] = running
        result = {}
        for version in versions:
            stats = above.get(version.trained_through_sale_id or 0)
            error = (
                line_error(stats, version.silver_price, version.gold_price_per_carat)
                if stats is not None
                else None
            )
            result[version.version] = (
                LiveAccuracy(n_sales=stats.n, rmse=error[0], bias=error[1])
                if stats is not None and error is not None
                else NO_SALES
            )
        return result
