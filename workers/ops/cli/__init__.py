"""retryctl: the operator's command line for durable-retry.

Each area of commands lives in its own module and is registered below with
``cli.add_command``.
"""

from __future__ import annotations

import click

from workers.ops.cli.common import connection_options
from workers.ops.cli.jobs_cmd import JOB_COMMANDS
from workers.ops.cli.metrics_cmd import metrics
from workers.ops.cli.pause_cmd import PAUSE_COMMANDS
from workers.ops.cli.policies_cmd import policies


@click.group(
    name="retryctl",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@connection_options
def cli() -> None:
    """Watch and steer durable Celery jobs and their retry policies.

    Exit codes: 0 ok, 1 not found, 2 bad usage or input, 3 Redis unreachable.
    """


cli.add_command(policies)
for command in (*JOB_COMMANDS, *PAUSE_COMMANDS, metrics):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``retryctl`` console script."""
    cli.main(prog_name="retryctl")
