"""Rootful podman for the deploy test: its settings, an offline base image, a wheelhouse.

No container registry is reachable from these machines, so the images the
compose file names are made here: one Debian base (``debootstrap`` from the
mirror apt already uses, read from the apt sources at run time) with Python and
``redis-server``, imported as ``localhost/durable-retry-base:bookworm`` and
kept between runs. The project's own image is built from it offline, from a
wheelhouse of the locked dependencies made on the host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BASE_IMAGE = "localhost/durable-retry-base:bookworm"
SUITE = "bookworm"
# What python:3.11-slim gives the Dockerfile (python3, venv, pip, useradd), plus
# redis-server so that one image also serves as the compose file's Redis.
PACKAGES = ["python3", "python3-venv", "python3-pip", "passwd", "redis-server", "ca-certificates"]

# podman's defaults fail here: "setrlimit RLIMIT_NOFILE: Operation not permitted",
# and crun refuses the hybrid cgroup layout.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""


def unavailable() -> str | None:
    """Why podman cannot run the deploy test here, or None when it can."""
    if sys.platform != "linux":
        return "the deploy test needs Linux (rootful podman)"
    if os.geteuid() != 0:
        return "the deploy test needs rootful podman: run it as root"
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y podman runc debootstrap)"
    return None


def write_containers_conf(directory: Path) -> Path:
    path = directory / "containers.conf"
    path.write_text(CONTAINERS_CONF)
    return path


def run(args: list[str], env: dict[str, str], timeout: float, *, stdin: Any = subprocess.DEVNULL,
        cwd: Path | None = None) -> str:  # fmt: skip
    """Run a command; on failure raise with the tail of its output (never the env)."""
    result = subprocess.run(args, env=env, stdin=stdin, capture_output=True, text=True,
                            timeout=timeout, cwd=cwd)  # fmt: skip
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(args[:3])} ... exited {result.returncode}:\n{output}")
    return result.stdout


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses for ``bookworm`` (its main suite, not security)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list")),
             *sorted((sources / "sources.list.d").glob("*.sources"))]  # fmt: skip
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if SUITE in fields.get("Suites", "").split() and "main" in fields.get(
                    "Components", "main"
                ).split() and fields.get("Enabled", "yes") != "no":
                    return fields.get("URIs", "").split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    raise RuntimeError(f"no apt source for Debian {SUITE} in {sources}")


def ensure_base_image(env: dict[str, str]) -> str:
    """The base image, made with debootstrap unless podman already has it (~45 s, ~200 MB)."""
    exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)  # fmt: skip
    if exists.returncode == 0:
        return BASE_IMAGE
    root = Path(tempfile.mkdtemp(prefix="durable-base-"))
    try:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(root), debian_mirror()], env, timeout=900)  # fmt: skip
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            run(["podman", "import", "--change", "CMD=/bin/bash", "-", BASE_IMAGE], env,
                timeout=600, stdin=tar.stdout)  # fmt: skip
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait(60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return BASE_IMAGE


def image_python(image: str, env: dict[str, str]) -> str:
    """The full version of the image's python3 (Debian bookworm's is 3.11.2)."""
    code = "import platform; print(platform.python_version())"
    return run(["podman", "run", "--rm", image, "python3", "-c", code], env, timeout=120).strip()


def make_wheelhouse(root: Path, wheels: Path, python: str, env: dict[str, str]) -> None:
    """Wheels of the locked runtime dependencies (and the build backend) for an offline
    build on an image whose Python is ``python`` (the host's may differ)."""
    from packaging.markers import Marker

    wheels.mkdir(parents=True, exist_ok=True)
    requirements = wheels / "requirements.txt"
    uv = Path(sys.executable).parent / "uv"
    exported = run(
        [str(uv), "export", "--frozen", "--no-emit-project", "--no-hashes", "--no-header",
         "--no-annotate"], env, timeout=120, cwd=root,
    )  # fmt: skip
    target = {"python_full_version": python, "python_version": ".".join(python.split(".")[:2])}
    pins = []
    for line in exported.splitlines():
        if not line.strip() or line.startswith(("#", "-")):
            continue
        pin, _, marker = line.partition(";")
        if not marker.strip() or Marker(marker.strip()).evaluate(target):
            pins.append(pin.strip())
    requirements.write_text("\n".join(pins) + "\n")
    run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps",
         "-w", str(wheels), "-r", str(requirements), "setuptools>=77"],
        env, timeout=600)  # fmt: skip
