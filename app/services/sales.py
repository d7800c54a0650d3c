"""Recording, listing and deleting sales."""

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, backend, driver_cursor
from app.errors import AppError, Forbidden, InvalidInput, Loc, NotFound
from app.orm import DeletedSale, Sale, Store, utcnow
from app.schemas.sales import SalePublic, SaleRecord
from app.security import Caller
from app.services import idempotency
from app.services.aggregates import SalesFilter
from app.services.auth import authenticate
from app.services.idempotency import Answer, Claim, Wanted

# PostgreSQL's advisory lock that deletions take in turn (beside training's and startup's).
DELETIONS_LOCK_KEY = 0x6A657766  # "jewf"
# A sample draws at most this many random ids, however sparse a store's sales are.
MAX_SAMPLE_PROBES = 100_000


# Where the store_id of the record at an index sits in the request, for error locations.
StoreIdLoc = Callable[[int], Loc]


def in_batch(index: int) -> Loc:
    return ["body", "records", index, "store_id"]


def in_body(_: int) -> Loc:
    return ["body", "store_id"]


def known_stores(session: Session, named: Sequence[tuple[Caller, int | None]]) -> set[int]:
    """Which of the stores that callers name exist, in one query."""
    # A store key's own store exists: the key was found on it, and stores are never deleted.
    own = {caller.store_id for caller, _ in named if caller.store_id is not None}
    others = {store_id for _, store_id in named if store_id is not None} - own
    if not others:
        return own
    return own | set(session.scalars(select(Store.id).where(Store.id.in_(others))))


def _store_id(caller: Caller, named_id: int | None, known: set[int], loc: Loc) -> int:
    """The store of a record: Forbidden for another store's, InvalidInput for a missing one."""
    caller.check_store(named_id)
    if named_id is None and caller.store_id is not None:
        return caller.store_id
    if named_id is None:
        raise InvalidInput.at(loc, "required when using the admin key", "missing")
    if named_id not in known:
        raise InvalidInput.at(loc, f"no store with id {named_id}")
    return named_id


def check_store_ids(
    session: Session, caller: Caller, wanted: Sequence[int | None], loc: StoreIdLoc
) -> list[int]:
    """The store of each record, checked against the caller; every problem is reported."""
    # A batch names few stores (usually none): each is checked once, and only a batch with a
    # problem is gone through record by record, to say where each problem is.
    named = list(dict.fromkeys(wanted))
    known = known_stores(session, [(caller, store_id) for store_id in named])
    try:
        resolved = {named_id: _store_id(caller, named_id, known, []) for named_id in named}
    except InvalidInput:
        pass
    else:
        return [resolved[named_id] for named_id in wanted]
    errors: list[dict[str, Any]] = []
    for index, named_id in enumerate(wanted):
        try:
            _store_id(caller, named_id, known, loc(index))
        except InvalidInput as exc:
            errors += exc.detail
    raise InvalidInput(errors)


SALES = Sale.metadata.tables[Sale.__tablename__]
_COLUMNS = ("store_id", "carats", "price_cents", "sold_at", "created_at")
# SQLite writes each time itself, from whole seconds since 1970 and microseconds, as the text
# the ORM's UTCDateTime stores ("2026-11-20 14:30:00.000000"): formatting it in Python took
# 3 us a row, as long as the rest of the row's insert.
_SQLITE_TIME = "strftime('%Y-%m-%d %H:%M:%S', ?, 'unixepoch') || printf('.%06d', ?)"
_INSERT_SQLITE = (
    f"INSERT INTO {SALES.name} ({', '.join(_COLUMNS)})"
    f" VALUES (?, ?, ?, {_SQLITE_TIME}, {_SQLITE_TIME})"
)
_COPY_SALES = f"COPY {SALES.name} (id, {', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ("int8", "int8", "float8", "int8", "timestamptz", "timestamptz")


def sale_row(store_id: int, record: SaleRecord, now: datetime) -> dict[str, Any]:
    """The columns of a new sale, other than its id."""
    return {
        "store_id": store_id,
        "carats": record.carats,
        "price_cents": record.price_cents,
        "sold_at": record.sold_at or now,
        "created_at": now,
    }


def _epoch(moment: datetime) -> tuple[int, int]:
    """Whole seconds since 1970 and microseconds. In the years a sale may have, the float
    timestamp is within 2**-21 s of the exact time, closer than a microsecond, so its floor
    is the whole second."""
    return math.floor(moment.timestamp()), moment.microsecond


def insert_rows(session: Session, rows: Sequence[dict[str, Any]]) -> Sequence[int]:
    """Insert the rows by the fastest path the backend has, with no object per row and no
    SQLAlchemy processing of each value: SQLite's executemany, PostgreSQL's binary COPY, on
    the session's own connection and transaction. Returns their ids, in the order of the
    rows."""
    if not rows:
        return []
    if backend(session) == "sqlite":
        connection = session.connection()
        # The rows of a batch share created_at: each moment is converted once.
        epochs: dict[datetime, tuple[int, int]] = {}

        def epoch(moment: datetime) -> tuple[int, int]:
            if (seconds := epochs.get(moment)) is None:
                seconds = epochs[moment] = _epoch(moment)
            return seconds

        values = []
        for r in rows:
            sold, created = epoch(r["sold_at"]), epoch(r["created_at"])
            values.append(
                (r["store_id"], r["carats"], r["price_cents"], *sold, *created),
            )
        # Written out, not compiled, but run through SQLAlchemy: its error handling (a 503 for
        # a busy or read-only database, a read-only connection dropped) holds here too.
        connection.exec_driver_sql(_INSERT_SQLITE, values)
        # AUTOINCREMENT numbers the rows of one transaction consecutively: it holds the write
        # lock from its first insert, and no id is ever reused or skipped within it.
        last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
        return range(last - len(rows) + 1, last + 1)
    ids = draw_sale_ids(session, len(rows))
    copy_sales(session, ids, rows)
    return ids


def draw_sale_ids(session: Session, count: int) -> list[int]:
    """PostgreSQL: ``count`` new sale ids from the sales' sequence, for copy_sales: no other
    transaction can get them.

    The transaction takes the sales table as a writer first (ROW EXCLUSIVE, what the COPY
    would take): a transaction that holds ids it has not committed yet is one that holds that
    lock, which is how last_drawn_sale_id finds the ids that may still come."""
    with driver_cursor(session, "draw sale ids") as cursor:
        # One round trip for the two statements, hence no parameters (they would make it one
        # statement of the extended protocol). The sequence is looked up once, in a subquery:
        # called in nextval's argument, it was looked up for every row.
        cursor.execute(
            f"LOCK TABLE {SALES.name} IN ROW EXCLUSIVE MODE;"
            " SELECT array_agg(nextval("
            f"(SELECT pg_get_serial_sequence('{SALES.name}', 'id')::regclass)))"
            f" FROM generate_series(1, {int(count)})"
        )
        cursor.nextset()
        [ids] = cursor.fetchone()
    return ids


# PostgreSQL: the transactions holding the sales table as writers (draw_sale_ids takes it so
# before it draws, an INSERT or a DELETE as it begins), by their virtual transaction ids: one
# that a later transaction took again would only be waited for longer.
_WRITERS = (
    "SELECT l.virtualtransaction FROM pg_locks AS l"
    " WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND l.relation = '{SALES.name}'::regclass AND l.pid <> pg_backend_pid()"
)
# The last id drawn, then the writers: the list refers to the id, so it is made after the id
# is read. (The sequence hands its numbers out one at a time, CACHE 1: no session keeps a
# block of them to give out later.)
_LAST_DRAWN = text(
    f"SELECT drawn.id, ARRAY({_WRITERS} AND drawn.id IS NOT NULL) FROM (SELECT coalesce("
    f"pg_sequence_last_value(pg_get_serial_sequence('{SALES.name}', 'id')::regclass), 0)"
    " AS id OFFSET 0) AS drawn"
)
_STILL_WRITING = text(f"SELECT ARRAY({_WRITERS} AND l.virtualtransaction = ANY(:writers))")


def last_drawn_sale_id(connection: Connection | Session) -> tuple[int, frozenset[str]]:
    """PostgreSQL: the last sale id drawn (0 for none), and the transactions that may still
    commit sales with ids up to it.

    Every id up to it was drawn by a transaction that held the sales table as a writer from
    before it drew: one still listed, or one that had ended when the list was made, whose
    sales any snapshot taken since sees. Once the listed ones have ended too (still_writing),
    a new snapshot holds every sale up to the id that will ever be."""
    drawn, writers = connection.execute(_LAST_DRAWN).one()
    return int(drawn), frozenset(writers)


def still_writing(connection: Connection | Session, writers: frozenset[str]) -> frozenset[str]:
    """Those of the writers that have not ended yet."""
    if not writers:
        return writers
    return frozenset(connection.execute(_STILL_WRITING, {"writers": list(writers)}).scalar_one())


def copy_sales(session: Session, ids: Sequence[int], rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL: insert the rows with the ids drawn for them, by binary COPY (which returns
    nothing: hence the ids drawn first)."""
    with driver_cursor(session, _COPY_SALES) as cursor, cursor.copy(_COPY_SALES) as copy:
        copy.set_types(_COPY_TYPES)
        for sale_id, r in zip(ids, rows, strict=True):
            copy.write_row(
                (
                    sale_id,
                    r["store_id"],
                    r["carats"],
                    r["price_cents"],
                    r["sold_at"],
                    r["created_at"],
                )
            )


def record_sales(
    session: Session, caller: Caller, records: Sequence[SaleRecord], *, loc: StoreIdLoc = in_batch
) -> tuple[Sequence[int], list[dict[str, Any]]]:
    """Insert all records or none; returns the ids and the rows stored, in the order of the
    records."""
    store_ids = check_store_ids(session, caller, [r.store_id for r in records], loc)
    now = utcnow()
    rows = [sale_row(store_id, r, now) for store_id, r in zip(store_ids, records, strict=True)]
    return insert_rows(session, rows), rows


@dataclass(frozen=True)
class SingleSale:
    """A request to record one sale: the API key it presents, the sale, its Idempotency-Key."""

    api_key: str
    sale: SaleRecord
    idempotency_key: str | None


def record_single_sales(
    session: Session, settings: Settings, singles: Sequence[SingleSale]
) -> list[Answer | Exception]:
    """Record the single sales of many requests together (app/group_commit.py), in a few
    statements whatever their number: each request's answer, or its own error, in order.

    A request that fails stores nothing, its Idempotency-Key included. The checks come in the
    order a lone request makes them: its API key, its Idempotency-Key, then its store. Every
    check is made before the INSERT, which only an error of the database itself can fail.
    """
    ttl = timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    outcomes: list[Answer | Exception | None] = [None] * len(singles)
    callers: dict[str, Caller] = {}
    accepted: list[tuple[int, Caller, SaleRecord]] = []
    wanted: dict[int, Wanted] = {}
    # A key a request of this group claims again: answered after the first (a replay, or a
    # fresh claim if the first failed), in a second pass over the same transaction.
    again: list[int] = []
    keys: set[tuple[str, str]] = set()
    for index, single in enumerate(singles):
        try:
            caller = callers.get(single.api_key) or authenticate(session, settings, single.api_key)
        except AppError as exc:
            outcomes[index] = exc
            continue
        callers[single.api_key] = caller
        key = single.idempotency_key
        if key is not None:
            if (caller.scope, key) in keys:
                again.append(index)
                continue
            keys.add((caller.scope, key))
            wanted[index] = Wanted(caller.scope, key, idempotency.fingerprint(single.sale.model()))
        accepted.append((index, caller, single.sale))
    claims = dict(
        zip(wanted, idempotency.claim_all(session, list(wanted.values()), ttl), strict=True)
    )
    known = known_stores(session, [(caller, record.store_id) for _, caller, record in accepted])
    now = utcnow()
    to_insert: list[tuple[int, dict[str, Any], Claim | None]] = []
    released: list[int] = []
    for index, caller, record in accepted:
        claim = claims.get(index)
        if isinstance(claim, Answer | AppError):
            outcomes[index] = claim
            continue
        try:
            store_id = _store_id(caller, record.store_id, known, ["body", "store_id"])
        except AppError as exc:
            outcomes[index] = exc
            if claim is not None:
                released.append(claim.id)
            continue
        to_insert.append((index, sale_row(store_id, record, now), claim))
    idempotency.release(session, released)
    ids = insert_rows(session, [row for _, row, _ in to_insert])
    answered: list[tuple[Claim, int, str]] = []
    for (index, row, claim), sale_id in zip(to_insert, ids, strict=True):
        body = SalePublic.json_of(sale_id, row)
        if claim is not None:
            answered.append((claim, 201, body))
        outcomes[index] = Answer(201, body)
    idempotency.complete_all(session, answered)
    if again:
        later = record_single_sales(session, settings, [singles[i] for i in again])
        for index, outcome in zip(again, later, strict=True):
            outcomes[index] = outcome
    # Every request was answered above: by the INSERT, by its key, or by its error.
    return cast(list[Answer | Exception], outcomes)


def _visible_sale(session: Session, caller: Caller, sale_id: int) -> Sale:
    sale = session.get(Sale, sale_id)
    if sale is None:
        raise NotFound(f"no sale with id {sale_id}")
    if not caller.is_admin and sale.store_id != caller.store_id:
        raise Forbidden(f"sale {sale_id} belongs to another store")
    return sale


def get_sale(session: Session, caller: Caller, sale_id: int) -> Sale:
    return _visible_sale(session, caller, sale_id)


def delete_sale(session: Session, caller: Caller, sale_id: int) -> None:
    """Delete a sale, leaving a record of it so that every process can take it out of the
    live accuracy it keeps."""
    if backend(session) == "postgresql":
        # Deletions take turns, from before each draws its number to its commit: numbers then
        # commit in order, so that the live accuracy, which reads the deletions above the
        # last number it saw, never passes one still to commit (app/live.py). SQLite's
        # writers take turns already.
        session.execute(select(func.pg_advisory_xact_lock(DELETIONS_LOCK_KEY)))
    sale = _visible_sale(session, caller, sale_id)
    session.add(DeletedSale(sale_id=sale.id, carats=sale.carats, price_cents=sale.price_cents))
    session.delete(sale)
    session.flush()


def list_sales(
    session: Session,
    caller: Caller,
    *,
    store_id: int | None,
    sold_since: datetime | None,
    sold_until: datetime | None,
    limit: int,
    after_id: int | None,
) -> tuple[list[Sale], int | None]:
    """One page in id order and the cursor for the next: a keyset, so concurrent inserts
    never shift or repeat rows across pages."""
    store_id = visible_store(caller, store_id)
    where = SalesFilter(
        store_ids=(store_id,) if store_id is not None else None,
        sold_since=sold_since,
        sold_until=sold_until,
    )
    query = select(Sale).where(*where.conditions()).order_by(Sale.id).limit(limit + 1)
    if after_id is not None:
        query = query.where(Sale.id > after_id)
    sales = list(session.scalars(query))
    if len(sales) > limit:
        return sales[:limit], sales[limit - 1].id
    return sales, None


def visible_store(caller: Caller, store_id: int | None) -> int | None:
    """The store a listing may cover: a store key its own, the admin any or all."""
    caller.check_store(store_id)
    return store_id if caller.is_admin else caller.store_id


def sample_sales(
    session: Session, caller: Caller, *, store_id: int | None, size: int, seed: int
) -> tuple[int, list[tuple[float, int]]]:
    """The number of matching sales and at most ``size`` of them, (carats, cents), drawn
    uniformly by probing random ids: a few index lookups, not a scan, at millions of sales."""
    store_id = visible_store(caller, store_id)
    where = SalesFilter(store_ids=(store_id,) if store_id is not None else None)
    n, low, high = session.execute(
        select(func.count(), func.min(Sale.id), func.max(Sale.id)).where(*where.conditions())
    ).one()
    if n <= size:
        rows = session.execute(
            select(Sale.carats, Sale.price_cents).where(*where.conditions()).order_by(Sale.id)
        ).all()
        return n, [(float(c), int(p)) for c, p in rows]
    # Enough probes that about `size` land on a matching sale, whatever the gaps and other
    # stores in the id range.
    rng = np.random.default_rng(seed)
    probes = min(int(size * (high - low + 1) / n * 1.2) + 1, MAX_SAMPLE_PROBES)
    ids = np.unique(rng.integers(low, high + 1, probes)).tolist()
    found: list[tuple[float, int]] = []
    for start in range(0, len(ids), 1000):
        found += [
            (float(c), int(p))
            for c, p in session.execute(
                select(Sale.carats, Sale.price_cents).where(
                    Sale.id.in_(ids[start : start + 1000]), *where.conditions()
                )
            )
        ]
    return n, found[:size]


def export_rows(db: Database, where: SalesFilter, chunk: int = 10_000) -> Iterator[list[Sale]]:
    """The matching sales in id order, a chunk at a time (keyset pagination), each chunk read
    in a short transaction of its own: a reader slower than the writers must not hold a
    snapshot open (SQLite's WAL, PostgreSQL's vacuum would grow behind it for as long as it
    reads). Every sale that exists for the whole export is in it once; one added or deleted
    meanwhile may be or not. The caller has limited ``where`` to the stores its key may see
    (visible_store)."""
    after = 0
    while True:
        with db.session() as session:
            rows = list(
                session.scalars(
                    select(Sale)
                    .where(*where.conditions(), Sale.id > after)
                    .order_by(Sale.id)
                    .limit(chunk)
                )
            )
        if not rows:
            return
        after = rows[-1].id
        yield rows
