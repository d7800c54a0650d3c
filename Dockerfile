# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /srv/jewelry
# Dependencies first, so that a change to the code or the README does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md alembic.ini ./
COPY app ./app
COPY models ./models
COPY migrations ./migrations
# The project's own modules are compiled here too: at run time their folders are read-only.
# uv leaves a world-writable lock file in the environment, which nothing needs later.
RUN uv sync --frozen --no-dev \
    && .venv/bin/python -m compileall -q app models migrations \
    && rm .venv/.lock

FROM python:3.11-slim
# The service's user owns its data and nothing else: the code and the environment stay
# root's, so the process cannot change what it runs.
RUN useradd --create-home --uid 10001 jewelry \
    && install -d -m 0700 -o jewelry -g jewelry /data
WORKDIR /srv/jewelry
COPY --from=build /srv/jewelry /srv/jewelry
USER 10001:10001
# The database and the admin key file both live in the volume; the server listens on every
# interface of the container, on the port the healthcheck reads.
ENV PATH=/srv/jewelry/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    JEWELRY_DATA_DIR=/data \
    JEWELRY_HOST=0.0.0.0 \
    JEWELRY_PORT=8000
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['JEWELRY_PORT'] + '/health/live', timeout=2)"]
# Migrations first; exec so that uvicorn is PID 1 and receives SIGTERM.
CMD ["sh", "-c", "jewelry-forecast migrate && exec jewelry-forecast serve"]
