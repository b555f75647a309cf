"""Enqueue from a web handler: a WSGI app with one endpoint, POST /orders/<id>/charge.

    DURABLE_REDIS_URL=redis://127.0.0.1:6379/0 python -m examples.webapp 8000

Any framework looks the same: call ``.delay()`` in the handler and answer at
once with the job id; the job's retries never block the request.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import make_server

from examples.jobs import charge_card

CHARGE = re.compile(r"^/orders/(\d+)/charge$")


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    match = CHARGE.match(environ.get("PATH_INFO", ""))
    if environ.get("REQUEST_METHOD") != "POST" or match is None:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "POST /orders/<id>/charge"}']
    job = charge_card.delay(int(match.group(1)))
    body = json.dumps({"job_id": job.id, "status": "queued"}).encode()
    start_response("202 Accepted", [("Content-Type", "application/json")])
    return [body]


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with make_server("127.0.0.1", port, application) as server:
        print(f"listening on http://127.0.0.1:{port}")
        server.serve_forever()
