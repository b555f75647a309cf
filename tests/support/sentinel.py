"""A Redis Sentinel topology the test owns, on loopback ports: 1 primary, 1 replica
(``--replicaof``) and 3 sentinels (quorum 2), each in its own directory.

The sentinels watch the primary with ``down-after-milliseconds 1000`` and
``failover-timeout 5000``, so a SIGKILLed primary is replaced in a few seconds.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import redis

from workers.ops.embedded_redis import RedisServer, RedisServerError, find_redis_server, free_port

MASTER = "durable-test"


class Sentinels:
    """The topology; ``url`` is the ``sentinel://`` URL naming the three sentinels."""

    def __init__(
        self, base: Path, *, name: str = MASTER, password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:  # fmt: skip
        self.base = base
        self.sentinel_password = sentinel_password  # the sentinels' own requirepass
        self.name = name
        self.password = password  # the data nodes' (requirepass and masterauth)
        auth = ("--masterauth", password) if password else ()
        self.primary = RedisServer(base / "primary", password=password, extra_args=auth)
        self.replica = RedisServer(base / "replica", password=password, extra_args=auth)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{login}127.0.0.1:{port}" for port in self.sentinel_ports)

    @property
    def env(self) -> dict[str, str]:
        env = {"DURABLE_REDIS_URL": self.url, "DURABLE_REDIS_SENTINEL_MASTER": self.name}
        if self.sentinel_password:
            env["DURABLE_REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def start(self, timeout: float = 20.0) -> None:
        self.primary.start()
        self.replica.extra_args += ("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        for index, port in enumerate(self.sentinel_ports):
            self.sentinels.append(self._start_sentinel(index, port))
        self.wait_ready(timeout)

    def _start_sentinel(self, index: int, port: int) -> subprocess.Popen[bytes]:
        folder = self.base / f"sentinel{index}"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "sentinel.conf"  # sentinel rewrites it: its own, writable
        lines = [
            f"port {port}", "bind 127.0.0.1", "protected-mode no", f"dir {folder}",
            f"logfile {folder / 'sentinel.log'}",
            f"sentinel monitor {self.name} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {self.name} 1000",
            f"sentinel failover-timeout {self.name} 5000",
        ]  # fmt: skip
        if self.password:
            lines.append(f"sentinel auth-pass {self.name} {self.password}")
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}",
                      f"sentinel sentinel-pass {self.sentinel_password}"]  # fmt: skip
        config.write_text("\n".join(lines) + "\n")
        return subprocess.Popen(
            [find_redis_server(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[index],
                           password=self.sentinel_password, decode_responses=True,
                           socket_timeout=2)  # fmt: skip

    def wait_ready(self, timeout: float) -> None:
        """Until every sentinel knows the 2 others and the replica, and the replica is in sync."""
        deadline = time.monotonic() + timeout
        seen: object = None
        while time.monotonic() < deadline:
            ready = 0
            for index, process in enumerate(self.sentinels):
                if process.poll() is not None:
                    log = self.base / f"sentinel{index}" / "sentinel.log"
                    raise RedisServerError(
                        f"sentinel {index} exited:\n{log.read_text(errors='replace')[-2000:]}"
                    )
                with contextlib.suppress(redis.RedisError):
                    seen = master = self.sentinel_client(index).sentinel_master(self.name)
                    if (int(master["num-other-sentinels"]) == 2
                            and int(master["num-slaves"]) == 1):  # fmt: skip
                        ready += 1
            if ready == len(self.sentinels) and self._replica_online():
                return
            time.sleep(0.1)
        raise RedisServerError(f"sentinels not ready in {timeout}s; last SENTINEL MASTER: {seen}")

    def _replica_online(self) -> bool:
        with contextlib.suppress(redis.RedisError):
            info = self.replica.client().info("replication")
            return bool(info.get("master_link_status") == "up")
        return False

    def master_port(self) -> int | None:
        """The port the sentinels name as master now (None if none answers)."""
        for index in range(len(self.sentinels)):
            with contextlib.suppress(redis.RedisError):
                address = self.sentinel_client(index).sentinel_get_master_addr_by_name(self.name)
                if address:
                    return int(address[1])
        return None

    def current_primary(self) -> RedisServer:
        return self.replica if self.master_port() == self.replica.port else self.primary

    def wait_failover(self, timeout: float = 20.0) -> float:
        """Wait until the replica is master, seen by the sentinels and by itself; seconds."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.master_port() == self.replica.port:
                with contextlib.suppress(redis.RedisError):
                    if self.replica.client().info("replication")["role"] == "master":
                        return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"no failover to the replica within {timeout}s")

    def rejoin_as_replica(self) -> None:
        """Start the killed old primary again as a replica of the promoted one, as an
        operator (or an orchestrator) replaces a lost node. Left to itself, sentinel
        turns a returning old master into a replica only after it has reported the
        wrong role for ~8 s."""
        self.primary.extra_args += ("--replicaof", "127.0.0.1", str(self.replica.port))
        self.primary.start()

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self.sentinels = []
        self.replica.kill()
        self.primary.kill()
