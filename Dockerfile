# sgdserve: train linear-regression models by SGD and serve them with gunicorn.
#
#   docker build -t sgdserve .
#   docker run --rm -p 8000:8000 sgdserve
#
# Without registry access, build from a local Python base image instead (docs/deployment.md):
#   docker build --network host --build-arg BASE_IMAGE="$(../shared/tools/docker-up.sh)" -t sgdserve .
#
# Only `python3` and `python3 -m venv` are used, so any Debian-like image with both works as base.
# Instructions are few on purpose: the legacy builder starts a container for each one, which on
# a vfs storage driver copies the whole file system every time.
ARG BASE_IMAGE=python:3.12-slim

# ---------------------------------------------------------------------------------------------
# build: a virtual environment with the dependencies, then the project's wheel on top.
FROM ${BASE_IMAGE} AS build

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every edit of the source.
COPY pyproject.toml /src/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -c 'import subprocess, sys, tomllib; \
deps = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]; \
subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-cache-dir", \
                       "--disable-pip-version-check", *deps])'

# Then the project as a wheel; .dockerignore lets only pyproject.toml, README.md and service/ in.
COPY . /src/
RUN cd /src \
 && /opt/venv/bin/python -m pip wheel --no-cache-dir --disable-pip-version-check --no-deps \
        --wheel-dir /wheels . \
 && /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-deps \
        /wheels/*.whl \
 && /opt/venv/bin/python -m pip check \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools

# ---------------------------------------------------------------------------------------------
# runtime: the virtual environment only; no pip, no wheel cache, no source tree.
FROM ${BASE_IMAGE}

# The venv's interpreter links to the base image's python3, which this stage shares.
COPY --from=build /opt/venv /opt/venv

# Container defaults; every other SGDSERVE_* setting keeps service/config.py's default.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SGDSERVE_HOST=0.0.0.0 \
    SGDSERVE_PORT=8000 \
    SGDSERVE_WORKERS=2 \
    SGDSERVE_MODEL_DIR=/models \
    SGDSERVE_LOG_DIR=/logs \
    SGDSERVE_MODEL_NAME=house-price \
    SGDSERVE_LOG_LEVEL=info

# A fixed uid/gid so volume ownership and Kubernetes' runAsUser can name it; no home directory.
# The default model is trained from the bundled sample now, so a fresh container answers
# /predict at once; this must precede VOLUME, after which build steps cannot change /models.
RUN groupadd --gid 10001 sgdserve \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sgdserve \
 && mkdir /models /logs \
 && sgdserve train --sample --target price \
 && chown -R 10001:10001 /models /logs

USER 10001:10001

# A new named volume starts as a copy of this content; a bind mount hides it (docs/deployment.md).
VOLUME /models /logs
EXPOSE 8000

# /ready is 200 only with a model loaded: "healthy" means "answers /predict". No curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SGDSERVE_PORT', '8000') + '/ready', timeout=4)"]

# Exec form: gunicorn's arbiter gets SIGTERM itself and lets workers finish in-flight requests.
CMD ["sgdserve", "serve"]
