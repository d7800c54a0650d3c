from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.deps import MetricsDep, ModelCacheDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep, cache: ModelCacheDep) -> Response:
    """Prometheus metrics: the totals of all workers."""
    model = await cache.get()
    metrics.active_model.set(model.version if model else 0)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
