"""retryctl metrics: serve the job metrics to Prometheus (or print them once)."""

from __future__ import annotations

import time

import click

from workers.ops.cli.common import connection, fail, redis_errors
from workers.ops.metrics import JobsCollector, serve


@click.command("metrics")
@click.option("--port", type=click.IntRange(0, 65535), default=9464, show_default=True,
              help="Port to serve /metrics on (0: any free port, printed).")  # fmt: skip
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--once", is_flag=True, help="Print the metrics once, in the text format, and exit.")
def metrics(port: int, host: str, once: bool) -> None:
    """Serve Prometheus metrics of the jobs, read from Redis at each scrape.

    Jobs by state and policy, failures by event, oldest failure age by policy,
    stuck jobs, sweeper recoveries. Every worker with DURABLE_METRICS_PORT
    serves the same numbers; one scrape target is enough.
    """
    conn = connection()
    with redis_errors(conn):
        store = conn.store
    if once:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(JobsCollector(store, lease_seconds=conn.settings.lease_seconds))
        with redis_errors(conn):
            click.echo(generate_latest(registry).decode(), nl=False)
        return
    try:
        server = serve(store, port, host, lease_seconds=conn.settings.lease_seconds)
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error}")
    bound = server.server_address[1]
    click.echo(f"serving metrics of {conn.url} on http://{host}:{bound}/metrics (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
