# The example app, and its standalone worker with another command: one image.
#   docker build -t fastapi-equeue-example .
#   docker run -p 8000:8000 fastapi-equeue-example                 # SQLite, workers in-process
#   docker compose up --scale worker=3                             # PostgreSQL, see compose file
# The build stage makes wheels; the final stage installs them, with no compiler and no cache.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fastapi_equeue ./fastapi_equeue
# The metrics extra: /jobs/metrics serves the backlog gauge that the workers scale on.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres,metrics]" "uvicorn>=0.30,<1"

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 app
WORKDIR /home/app
COPY --chown=app:app example_app ./example_app
USER 10001
EXPOSE 8000
# The web process answers; a worker container (another command) turns this check off.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/openapi.json', timeout=2)"]
CMD ["python", "-m", "example_app"]
