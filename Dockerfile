# The image the compose file runs: durable-retry plus your jobs module.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY workers ./workers
COPY examples ./examples
# /data holds Flower's state; a named volume takes this owner on first use.
RUN pip install --no-cache-dir . && useradd --create-home durable \
    && mkdir /data && chown durable /data
USER durable
# A worker by default; compose overrides the command per service.
CMD ["celery", "-A", "examples.jobs", "worker", "--loglevel=INFO"]
