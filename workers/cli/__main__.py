"""``python -m workers.cli`` runs retryctl (as the console script does)."""

from workers.cli import main

main()
