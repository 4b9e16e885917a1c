"""What every benchmark needs around the server: free loopback ports, a fresh SQLite file, a
throwaway PostgreSQL cluster (``.ci/postgres.sh``; ``FHIR_CI_PG_PORT`` / ``FHIR_CI_PG_DIR``
choose its port and directory) and a line describing the machine."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
_POSTGRES = ROOT / ".ci" / "postgres.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlite_url(name: str) -> str:
    """A SQLite URL for ``bench/out/NAME.sqlite``, its earlier files removed."""
    path = OUT / f"{name}.sqlite"
    for suffix in ("", "-wal", "-shm", ".write-lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def postgres_url() -> str:
    """The URL of a freshly started throwaway PostgreSQL cluster."""
    stop_postgres()
    started = subprocess.run(["bash", str(_POSTGRES), "start"], check=True, capture_output=True, text=True)
    return started.stdout.strip().splitlines()[-1]


def stop_postgres() -> None:
    subprocess.run(["bash", str(_POSTGRES), "stop"], check=False, capture_output=True)


def wait_until_serving(base: str, process: subprocess.Popen, seconds: float = 120) -> None:
    """Return once ``base``/metadata answers 200; stop ``process`` and raise if it never does."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the server at {base} did not start")


def machine() -> str:
    memory = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024 / 1024
    except FileNotFoundError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"
