"""How each model version quotes the sales recorded after it was trained, kept incrementally.

Every version has a watermark: the highest sale id its training read, at or below which every
sale its filters match is in its fit, whenever it was committed (app/training.py). The sales
above the lowest watermark are cut at each watermark into segments, and each segment is kept
as its sufficient statistics, which merge by addition. A version's live accuracy is then the
sum of the segments above its watermark, measured against its line in O(1)
(models.line_error).

The kept segments cover the sales up to a *settled* id, below which no sale can still arrive:
on SQLite, where writers take turns and ids follow commits, the newest id; on PostgreSQL,
where a transaction can commit ids below ones already visible, the last id drawn as of the
latest refresh (this one or an earlier one) whose writers have all ended since
(app/services/sales.py, last_drawn_sale_id), looked up before the refresh's snapshot begins.
Each refresh folds in what settled since the last one and what was deleted since (the
deleted_sales table, read above the last number seen: deletions take turns, so their numbers
commit in order, services/sales.py delete_sale), and adds the sales above the settled id
afresh; so a registry read costs the same at ten sales or ten million.

Each process keeps its own copy and refreshes it at most once per ``refresh_seconds``, in
one snapshot, so that a sale and its deletion are never seen apart.
"""

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import Database, backend
from app.orm import DeletedSale, ModelVersion
from app.schemas.registry import LiveAccuracy
from app.services.aggregates import Reference, newest_sale_id, sums_by_segment, typical_sale
from app.services.sales import last_drawn_sale_id
from models import InvalidDataError, SufficientStats
from models.report import line_error

NO_SALES = LiveAccuracy(n_sales=0, rmse=None, bias=None)
# PostgreSQL: how many refreshes' sightings of the ids drawn are kept, at most.
SIGHTINGS_KEPT = 1_000


@dataclass
class _State:
    reference: Reference | None = None
    # Segment start (a watermark) -> statistics of the settled sales above it, up to the next.
    segments: dict[int, SufficientStats] = field(default_factory=dict)
    settled_through: int = 0
    deletions_seen: int = 0
    built_at: float = field(default_factory=time.monotonic)


class LiveAccuracyTracker:
    def __init__(self, db: Database, refresh_seconds: float, forget_after_seconds: float) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        # Deleted sales are purged after this long; a copy older than that is rebuilt.
        self._forget_after = forget_after_seconds
        self._state: _State | None = None
        # The sales above the settled id, added up afresh at each refresh.
        self._unsettled: dict[int, SufficientStats] = {}
        # PostgreSQL: (the last sale id drawn, the transactions that were writing then), of
        # the refreshes since the last one that settled, oldest first. Ever fewer settle
        # while a writer stays open: past the bound the oldest are let go, which only keeps
        # more sales unsettled, added up afresh.
        self._seen: deque[tuple[int, frozenset[str]]] = deque(maxlen=SIGHTINGS_KEPT)
        self._refreshed_at = float("-inf")
        self._invalid = False
        self._lock = threading.Lock()

    def of(self, versions: Iterable[ModelVersion]) -> dict[int, LiveAccuracy]:
        with self._lock:
            due = time.monotonic() - self._refreshed_at >= self._refresh_seconds
            if due or self._invalid:
                settled = self._settled()
                with self._db.session(snapshot=True) as session:
                    self._refresh(session, settled)
                self._refreshed_at = time.monotonic()
                self._invalid = False
            return self._measure(versions)

    def invalidate(self) -> None:
        """Make the next read refresh (after this process trained or deleted a version)."""
        self._invalid = True

    # Refreshing

    def _refresh(self, session: Session, settled: int | None) -> None:
        newest = newest_sale_id(session)
        if settled is None:
            settled = newest
        starts = sorted(
            set(session.scalars(select(func.coalesce(ModelVersion.trained_through_sale_id, 0))))
        )
        last_deletion = session.scalar(select(func.coalesce(func.max(DeletedSale.seq), 0))) or 0
        state = self._state
        if (
            state is None
            or state.reference is None
            or time.monotonic() - state.built_at > self._forget_after
            or not self._catch_up(session, state, starts, settled, last_deletion)
        ):
            state = self._built(session, starts, settled, last_deletion)
            self._state = state
        self._unsettled = (
            sums_by_segment(session, starts, state.settled_through, newest, state.reference)
            if state.reference is not None
            else {}
        )

    def _settled(self) -> int | None:
        """PostgreSQL: the highest id at or below which no sale can still be committed, by
        the time a snapshot taken next begins; None on SQLite, where it is the newest id that
        snapshot holds.

        Looked up before the snapshot, in a transaction of its own: a writer seen ended then
        has committed before the snapshot, as one seen ended by a query in it might not."""
        if backend(self._db.engine) != "postgresql":
            return None
        with self._db.session() as session:
            drawn, writers = last_drawn_sale_id(session)
        self._seen.append((drawn, writers))
        # The last sighting whose writers have all ended: every sale up to its id is in.
        # Ended, they stay so, and it stays the best until a later one settles.
        best = None
        for index, (_, then) in enumerate(self._seen):
            if then.isdisjoint(writers):
                best = index
        if best is None:
            return self._state.settled_through if self._state is not None else 0
        for _ in range(best):
            self._seen.popleft()
        return self._seen[0][0]

    def _built(self, session: Session, starts: list[int], settled: int, deletions: int) -> _State:
        state = _State(settled_through=settled, deletions_seen=deletions)
        if starts:
            # Typical of all the sales: the few since the last training may be one outlier.
            state.reference = typical_sale(session, [])
        if state.reference is not None:
            sums = sums_by_segment(session, starts, starts[0], settled, state.reference)
            state.segments = {start: sums.get(start, self._empty(state)) for start in starts}
        return state

    def _catch_up(
        self, session: Session, state: _State, starts: list[int], settled: int, deletions: int
    ) -> bool:
        """Fold in what changed since the last refresh; False when only a rebuild will do
        (a new watermark below an old one, or sums that no longer describe a set of sales)."""
        known = sorted(state.segments)
        added = [s for s in starts if s not in state.segments]
        if known and added and added[0] < known[-1]:
            return False
        try:
            for start in set(known) - set(starts):
                self._drop_segment(state, start)
            # Deletions before splits: a split reads the segment as it is now, without them.
            self._forget_deleted(session, state, deletions)
            for start in added:
                self._add_segment(session, state, start)
            self._settle(session, state, settled)
        except InvalidDataError:
            return False
        return True

    @staticmethod
    def _empty(state: _State) -> SufficientStats:
        assert state.reference is not None
        return SufficientStats(0, state.reference[0], state.reference[1] / 100.0)

    @staticmethod
    def _segment_of(state: _State, sale_id: int) -> int | None:
        below = [start for start in state.segments if start < sale_id]
        return max(below) if below else None

    def _drop_segment(self, state: _State, start: int) -> None:
        gone = state.segments.pop(start)
        previous = self._segment_of(state, start)
        if previous is not None:
            state.segments[previous] = state.segments[previous] + gone

    def _add_segment(self, session: Session, state: _State, start: int) -> None:
        """A new watermark at or above every other: split the last segment there."""
        assert state.reference is not None
        if start >= state.settled_through:
            state.segments[start] = self._empty(state)
            return
        part = sums_by_segment(session, [start], start, state.settled_through, state.reference)
        tail = self._segment_of(state, start)
        new = part.get(start, self._empty(state))
        if tail is not None:
            state.segments[tail] = state.segments[tail] - new
        state.segments[start] = new

    def _forget_deleted(self, session: Session, state: _State, last: int) -> None:
        """Take deleted settled sales out; deleted unsettled ones are simply not added up."""
        deleted = session.execute(
            select(DeletedSale.sale_id, DeletedSale.carats, DeletedSale.price_cents).where(
                DeletedSale.seq > state.deletions_seen, DeletedSale.seq <= last
            )
        )
        for sale_id, carats, cents in deleted:
            segment = self._segment_of(state, sale_id)
            if segment is not None and sale_id <= state.settled_through:
                one = SufficientStats.from_arrays([carats], [cents / 100.0])
                state.segments[segment] = state.segments[segment] - one
        state.deletions_seen = last

    def _settle(self, session: Session, state: _State, settled: int) -> None:
        assert state.reference is not None
        if settled <= state.settled_through:
            return
        sums = sums_by_segment(
            session, list(state.segments), state.settled_through, settled, state.reference
        )
        for start, part in sums.items():
            state.segments[start] = state.segments[start] + part
        state.settled_through = settled

    # Measuring

    def _measure(self, versions: Iterable[ModelVersion]) -> dict[int, LiveAccuracy]:
        segments = self._state.segments if self._state is not None else {}
        above: dict[int, SufficientStats] = {}
        running: SufficientStats | None = None
        for start in sorted(segments, reverse=True):
            here = segments[start]
            if start in self._unsettled:
                here = here + self._unsettled[start]
            running = here if running is None else running + here
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
