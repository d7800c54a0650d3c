# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /srv/jewelry
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY alembic.ini ./
COPY app ./app
COPY models ./models
COPY migrations ./migrations
RUN uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 jewelry \
    && mkdir /data && chown jewelry:jewelry /data
WORKDIR /srv/jewelry
COPY --from=build --chown=jewelry:jewelry /srv/jewelry /srv/jewelry
USER 10001:10001
ENV PATH=/srv/jewelry/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    JEWELRY_DATABASE_URL=sqlite:////data/jewelry.db
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
# Migrations first; exec so that uvicorn is PID 1 and receives SIGTERM.
CMD ["sh", "-c", "jewelry-forecast migrate && exec jewelry-forecast serve --host 0.0.0.0 --port 8000"]
