# The image the compose file runs: durable-retry plus your jobs module.
#
# BASE_IMAGE: any Debian-like image with python3 (and its venv module); the
# deploy test (tests/deploy) builds on a local one, as no registry is reached
# there. Offline builds pass PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels and put a
# wheelhouse in .wheels/ of the build context.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
WORKDIR /app
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY workers ./workers
COPY examples ./examples
# A virtual environment, so the same steps work where the system Python is
# "externally managed" (Debian's); /data holds Flower's state (a named volume
# takes this owner on first use). The build context is mounted only for this
# step, so a wheelhouse in it never lands in a layer.
RUN --mount=type=bind,target=/context \
    if [ -n "${PIP_FIND_LINKS:-}" ]; then mkdir -p /wheels && cp /context/.wheels/* /wheels/; fi \
    && python3 -m venv /opt/durable \
    && /opt/durable/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && rm -rf /wheels build *.egg-info \
    && useradd --create-home durable \
    && mkdir /data && chown durable /data
ENV PATH=/opt/durable/bin:$PATH \
    JOBS_MODULE=examples.jobs \
    PYTHONUNBUFFERED=1
USER durable
# A worker by default; compose overrides the command per service. `exec` so
# celery is PID 1 and gets the SIGTERM of a warm shutdown itself.
CMD ["sh", "-c", "exec celery -A \"$JOBS_MODULE\" worker --loglevel=INFO"]
