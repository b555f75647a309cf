"""What operators use: ``retryctl`` (cli/), the control API, Prometheus metrics
and the embedded Redis of the demo. Each part takes a store, and a Celery app
only where it broadcasts; nothing here imports ``workers.integration``."""
