# release-guard as a container image: the GitHub App's `serve` (webhooks + embedded worker).
#
#   docker build -t release-guard .
#   docker run -p 3000:3000 -v release-guard-data:/data release-guard
#
# Two stages: the builder has the build tools and turns the project and every dependency into
# wheels; the final image installs those wheels and nothing else (no compiler, no build
# tools, no source tree), and runs as an unprivileged user.
#
# BASE_IMAGE is any Debian-like image with Python 3.11+ and its venv module (python3 -m venv):
# `python:3.12-slim` by default; `.ci/image` builds on a local Debian base made with
# debootstrap, since no container registry is reachable where this project is tested.
# (No `# syntax=` line: it would make BuildKit fetch a Dockerfile frontend from a registry.)
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore lets in only what the package is built from (never .env, keys or data).
COPY . .
RUN python3 -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/release-guard/bin:$PATH \
    DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json
# The wheels come in through a bind mount, so they never become a layer of this image. They go
# into their own virtual environment: the base's Python stays as it was (Debian's refuses
# installs into it, PEP 668), and the environment's bin/ leads PATH.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python3 -m venv /opt/release-guard \
    && /opt/release-guard/bin/python -m pip install --no-cache-dir --no-index \
        --find-links=/wheels release-guard \
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
