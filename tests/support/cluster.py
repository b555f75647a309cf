"""A Redis Cluster the test owns, on loopback ports: 3 masters (and, with
``replicas=1``, a replica each), every node in its own directory with its own
``--cluster-config-file``, joined by ``redis-cli --cluster create ... --cluster-yes``.

``cluster-node-timeout`` is 1000 ms, so a SIGKILLed master's replica takes over
in a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

from workers.ops.embedded_redis import RedisServer, RedisServerError, find_redis_server, free_port

NODE_TIMEOUT_MS = 1000
BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000 (Redis 6.2 and 7)


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too."""
    return free_port(also_free=BUS_OFFSET)


def find_redis_cli() -> str:
    """``redis-cli`` next to the ``redis-server`` the tests run, else on PATH."""
    server = find_redis_server()
    beside = Path(server).with_name("redis-cli")
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("redis-cli")
    if not found:
        raise RedisServerError(f"no redis-cli beside {server} or on PATH: cannot create a cluster")
    return found


class Cluster:
    """The topology; ``url`` is the ``redis+cluster://`` URL naming every master."""

    def __init__(
        self, base: Path, *, masters: int = 3, replicas: int = 0, password: str | None = None
    ) -> None:
        self.base = base
        self.password = password
        self.replicas = replicas
        auth = ("--masterauth", password) if password else ()
        self.nodes = [
            RedisServer(
                base / f"node{n}", port=cluster_port(), password=password,
                extra_args=(
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(base / f"node{n}" / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    # the other masters' slots keep working while one has none
                    "--cluster-require-full-coverage", "no", *auth,
                ),
            )
            for n in range(masters * (1 + replicas))
        ]  # fmt: skip
        self.masters = masters

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[: self.masters])
        return f"redis+cluster://{login}{hosts}"

    def start(self, timeout: float = 30.0) -> None:
        if "cluster_enabled:1" not in self._probe_support():
            raise RedisServerError("this redis-server does not run in cluster mode")
        for node in self.nodes:
            node.start()
        command = [find_redis_cli(), "--cluster", "create",
                   *(f"127.0.0.1:{node.port}" for node in self.nodes),
                   "--cluster-replicas", str(self.replicas), "--cluster-yes"]  # fmt: skip
        if self.password:
            command += ["-a", self.password, "--no-auth-warning"]
        made = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if made.returncode != 0:
            raise RedisServerError(f"redis-cli --cluster create failed:\n{made.stdout[-2000:]}"
                                   f"{made.stderr[-2000:]}")  # fmt: skip
        self.wait_ready(timeout)

    def _probe_support(self) -> str:
        """INFO of a throw-away node started with --cluster-enabled (empty if it fails)."""
        probe = RedisServer(self.base / "probe", port=cluster_port(), appendonly=False,
                            extra_args=(
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.base / "probe" / "nodes.conf"),
                            ))  # fmt: skip
        try:
            probe.start()
            return "\n".join(f"{k}:{v}" for k, v in probe.client().info("cluster").items())
        except RedisServerError:
            return ""
        finally:
            probe.kill()

    def client(self, **options: object) -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in self.live_nodes()],
            password=self.password, decode_responses=True, socket_timeout=5,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip

    def live_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    def wait_ready(self, timeout: float) -> None:
        """Until every node says cluster_state:ok, knows every node, and replicas are in sync."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if all(self._node_ready(node) for node in self.live_nodes()):
                return
            last = [self._state(node) for node in self.live_nodes()]
            time.sleep(0.1)
        raise RedisServerError(f"cluster not ready in {timeout}s: {last}")

    def _state(self, node: RedisServer) -> str:
        with contextlib.suppress(redis.RedisError):
            return str(node.client().info("cluster") and node.client().cluster("info"))
        return "unreachable"

    def _node_ready(self, node: RedisServer) -> bool:
        with contextlib.suppress(redis.RedisError):
            client = node.client()
            info = client.cluster("info")
            if info.get("cluster_state") != "ok":
                return False
            if int(info.get("cluster_known_nodes", 0)) < len(self.live_nodes()):
                return False
            replication = client.info("replication")
            if replication.get("role") == "slave":
                return bool(replication.get("master_link_status") == "up")
            return True
        return False

    def master_of(self, key: str) -> RedisServer:
        """The node that holds ``key``'s slot now."""
        slot = int(self.client().cluster_keyslot(key))
        for node in self.live_nodes():
            with contextlib.suppress(redis.RedisError):
                for start, end, master, *_ in node.client().cluster("slots"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no node serves the slot of {key}")

    def replica_of(self, master: RedisServer) -> RedisServer:
        for node in self.live_nodes():
            with contextlib.suppress(redis.RedisError):
                info = node.client().info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                    return node
        raise AssertionError(f"node {master.port} has no replica")

    def wait_promoted(self, replica: RedisServer, timeout: float = 30.0) -> float:
        """Wait until ``replica`` is a master and the cluster is ok again; seconds."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(redis.RedisError):
                client = replica.client()
                if (client.info("replication").get("role") == "master"
                        and client.cluster("info").get("cluster_state") == "ok"):  # fmt: skip
                    return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"node {replica.port} was not promoted within {timeout}s")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
