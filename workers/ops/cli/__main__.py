"""``python -m workers.cli`` runs retryctl (as the console script does)."""

from workers.ops.cli import main

main()
