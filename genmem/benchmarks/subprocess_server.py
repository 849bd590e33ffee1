"""`genmem serve` in a child process on a free loopback port: for benchmarks and examples that want a real server.

The child runs in a scratch working directory: `python -m` puts the working
directory first on the import path, and a checkout of genmem there would
shadow the installed package (whose `genmem.cli` is mapped from `cli/`).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from genmem.errors import GenmemError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def serving(memory: str | Path, options: list[str], start_seconds: float = 180) -> Iterator[str]:
    """Yield the URL of `genmem serve MEMORY --port P *options` once it is ready; stop it on exit."""
    with serving_process(memory, options, start_seconds) as (url, _):
        yield url


@contextlib.contextmanager
def serving_process(memory: str | Path, options: list[str], start_seconds: float = 180
                    ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like `serving`, also yielding the server's process (to read its memory use, say)."""
    port = free_port()
    command = [sys.executable, "-m", "genmem.cli.main", "serve", str(Path(memory).resolve()),
               "--port", str(port), *options]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, cwd=scratch, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + start_seconds
            while not is_ready(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise GenmemError(f"`genmem serve` did not start: {log.read().decode()[-2000:]}")
                time.sleep(0.2)
            yield url, server
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
