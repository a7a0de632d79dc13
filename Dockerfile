# syntax=docker/dockerfile:1
# release-guard as a container image: the GitHub App's `serve` (webhooks + embedded worker).
#
#   docker build -t release-guard .
#   docker run -p 3000:3000 -v release-guard-data:/data release-guard
#
# Two stages: the builder has the build tools and turns the project and every dependency into
# wheels; the final image installs those wheels and nothing else (no compiler, no build
# tools, no source tree), and runs as an unprivileged user.

FROM python:3.12-slim AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore lets in only what the package is built from (never .env, keys or data).
COPY . .
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json
# The wheels come in through a bind mount, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels release-guard \
    && groupadd --system --gid 10001 release-guard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin \
        release-guard \
    && mkdir -p /data \
    && chown 10001:10001 /data
# /data is the working directory: `.env` (written by the setup page), the SQLite database
# and the retained artifacts live there. app.yml is the manifest the setup page registers.
COPY --chown=10001:10001 app.yml /data/app.yml
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["release-guard", "serve"]
