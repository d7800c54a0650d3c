import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from app import csv_import
from app.deps import (
    WRITES,
    CallerDep,
    DatabaseDep,
    ImportCaller,
    MetricsDep,
    PageLimit,
    PresentedKey,
    SessionDep,
    SettingsDep,
)
from app.errors import AppError, InvalidInput, RequestTimeout, too_long
from app.fields import Cursor, IntegerText, RowId, Timestamp, from_cents, money_text
from app.group_commit import GroupCommit
from app.metrics import Metrics
from app.routes import JsonRoute
from app.schemas.common import ErrorBody
from app.schemas.sales import (
    ImportResult,
    SaleBatchResult,
    SaleCreate,
    SalePage,
    SalePoint,
    SalePublic,
    SaleRecord,
    SaleSample,
    ValidBatch,
)
from app.services import idempotency, sales
from app.services.aggregates import SalesFilter, check_period
from app.services.sales import SingleSale

# The process's one writer of single sales: app/main.py makes it.
SaleWriter = GroupCommit[SingleSale, idempotency.Answer]

router = APIRouter(prefix="/api/v1/sales", tags=["sales"], route_class=JsonRoute)

# Printable ASCII without spaces, 1 to 255 characters.
IDEMPOTENCY_KEY_CHARACTER, IDEMPOTENCY_KEY_LENGTH = r"[\x21-\x7e]", 255
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH,
        pattern=f"^{IDEMPOTENCY_KEY_CHARACTER}+$",
        description="Retries with the same key and body replay the first response.",
    ),
]


def _respond(answer: idempotency.Answer) -> Response:
    return Response(
        answer.body,
        status_code=answer.status_code,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"} if answer.replayed else None,
    )


async def record_single(writer: SaleWriter, metrics: Metrics, single: SingleSale) -> Response:
    """Record one sale in the writer's next group and answer it: the route's work, and the
    shortcut's (app/shortcuts.py). The writer raises the request's own error."""
    answer = await writer.run(single)
    if not answer.replayed:
        metrics.sales_ingested.labels("single").inc()
    return _respond(answer)


@router.post("", status_code=201, response_model=SalePublic)
async def create_sale(
    body: SaleCreate,
    api_key: PresentedKey,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Record one sale. With a store key, store_id may be left out."""
    # Most requests, those written the usual way, are answered by app/shortcuts.py without
    # coming here. The sale commits together with the single sales other requests record at
    # the same time, and the key is checked in that transaction.
    single = SingleSale(api_key, SaleRecord.of(body), idempotency_key)
    return await record_single(request.app.state.sale_writer, request.app.state.metrics, single)


@router.post("/batch", status_code=201, response_model=SaleBatchResult, dependencies=[WRITES])
def create_batch(
    body: Annotated[ValidBatch, Body()],
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Record many sales: all of them, or none when any is invalid."""
    limit = settings.MAX_BATCH_RECORDS
    if len(body.records) > limit:
        raise too_long(["body", "records"], limit, len(body.records))

    def produce() -> str:
        ids, rows = sales.record_sales(session, caller, body.records)
        metrics.sales_ingested.labels("batch").inc(len(ids))
        return SaleBatchResult.json_of(ids, rows)

    if idempotency_key is None:
        return _respond(idempotency.Answer(201, produce()))
    # Only a request with a key pays for the batch as a model, which identifies it.
    ttl = timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    model = body.model()
    return _respond(idempotency.once(session, caller.scope, idempotency_key, model, ttl, produce))


# The body is read in the handler, after the key and the import slot are settled, so FastAPI
# does not know it: the schema states it here.
IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV: carats, price[, sold_at][, store_id]",
                        }
                    },
                    "required": ["file"],
                }
            }
        },
    }
}


@router.post(
    "/import",
    status_code=201,
    response_model=ImportResult,
    openapi_extra=IMPORT_BODY,
    responses={
        429: {
            "model": ErrorBody,
            "description": "As many imports as the server takes at once are running; "
            "retry after Retry-After seconds",
        }
    },
)
async def import_csv(
    request: Request,
    caller: ImportCaller,
    db: DatabaseDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> ImportResult:
    """Record every row of a CSV file, or none; bad rows are listed by line number."""
    deadline = settings.UPLOAD_TIMEOUT_SECONDS
    try:
        # A whole upload has a deadline, not only each pause in it: an upload trickling in
        # would otherwise hold one of the worker's few import slots for as long as it likes.
        async with asyncio.timeout(deadline):
            # The file goes to a spooled temporary file; any other field would be held in
            # memory, so there may be only one, and a small one.
            form = await request.form(max_files=1, max_fields=1, max_part_size=1024)
    except ClientDisconnect:
        raise AppError("the client went away before the upload was complete") from None
    except TimeoutError:
        raise RequestTimeout(
            f"the upload took longer than {deadline:g} seconds; send the file faster, or split it"
        ) from None
    try:
        upload = form.get("file")
        if upload is None:
            raise InvalidInput.at(["body", "file"], "Field required", "missing")
        if not isinstance(upload, UploadFile):
            raise InvalidInput.at(["body", "file"], "must be a file, sent as multipart")
        count = await run_in_threadpool(csv_import.import_sales, db, caller, upload.file)
    finally:
        await form.close()
    metrics.sales_ingested.labels("import").inc(count)
    return ImportResult(count=count)


@router.get("", response_model=SalePage)
def list_sales(
    caller: CallerDep,
    session: SessionDep,
    limit: PageLimit,
    store_id: Annotated[RowId | None, Query()] = None,
    sold_since: Annotated[Timestamp | None, Query()] = None,
    sold_until: Annotated[Timestamp | None, Query()] = None,
    cursor: Cursor | None = None,
) -> SalePage:
    """Sales in the order they were recorded, a page at a time. Store keys see their own."""
    check_period(("query",), sold_since, sold_until)
    page, last = sales.list_sales(
        session,
        caller,
        store_id=store_id,
        sold_since=sold_since,
        sold_until=sold_until,
        limit=limit,
        after_id=int(cursor) if cursor is not None else None,
    )
    return SalePage(
        items=[SalePublic.from_row(s) for s in page], next_cursor=str(last) if last else None
    )


@router.get("/sample", response_model=SaleSample)
def sample_sales(
    caller: CallerDep,
    session: SessionDep,
    store_id: Annotated[RowId | None, Query()] = None,
    size: Annotated[int, Query(ge=1, le=10_000), IntegerText] = 2_000,
) -> SaleSample:
    """A uniform sample of the sales (carats and price), for plotting millions of them."""
    n, points = sales.sample_sales(session, caller, store_id=store_id, size=size, seed=0)
    return SaleSample(
        n_sales=n,
        items=[SalePoint(carats=c, price=money_text(cents / 100)) for c, cents in points],
    )


EXPORT_COLUMNS = "carats,price,sold_at,store_id\n"


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The import's columns."}},
)
def export_csv(
    caller: CallerDep,
    db: DatabaseDep,
    store_id: Annotated[RowId | None, Query()] = None,
    sold_since: Annotated[Timestamp | None, Query()] = None,
    sold_until: Annotated[Timestamp | None, Query()] = None,
) -> StreamingResponse:
    """The sales as CSV with the columns the import takes, filtered like the listing, streamed
    in bounded memory; importing it again gives the same sales."""
    check_period(("query",), sold_since, sold_until)
    visible = sales.visible_store(caller, store_id)
    where = SalesFilter(
        store_ids=(visible,) if visible is not None else None,
        sold_since=sold_since,
        sold_until=sold_until,
    )

    def lines() -> Iterator[str]:
        yield EXPORT_COLUMNS
        for chunk in sales.export_rows(db, where):
            yield "".join(
                f"{s.carats!r},{from_cents(s.price_cents)},"
                f"{s.sold_at.isoformat().replace('+00:00', 'Z')},{s.store_id}\n"
                for s in chunk
            )

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="sales.csv"'},
    )


@router.get("/{sale_id:int}", response_model=SalePublic)
def get_sale(sale_id: RowId, caller: CallerDep, session: SessionDep) -> SalePublic:
    """One sale."""
    return SalePublic.from_row(sales.get_sale(session, caller, sale_id))


@router.delete("/{sale_id:int}", status_code=204, dependencies=[WRITES])
def delete_sale(sale_id: RowId, caller: CallerDep, session: SessionDep) -> Response:
    """Delete one sale (a correction); models already trained keep what they learned."""
    sales.delete_sale(session, caller, sale_id)
    return Response(status_code=204)
