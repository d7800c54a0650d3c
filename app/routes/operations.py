from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import MetricsDep, ModelCacheDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep, cache: ModelCacheDep) -> Response:
    """Prometheus metrics of this worker."""
    model = await cache.get()
    metrics.active_model.set(model.version if model else 0)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
