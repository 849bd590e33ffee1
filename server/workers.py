"""`genmem serve --workers N`: N server processes on one machine behind one port.

uvicorn's supervisor starts the processes and shares the listening socket
between them, so the kernel hands each new connection to one of them; it
pings every worker and replaces one that dies or stops answering. Each
worker builds its own app (its own sampler, loaded from the memory on disk)
from the settings the parent leaves in the environment. Versions are
immutable, so every worker serves the same images for a pinned request
(same seed, same device kind and precision). Every reply names the process
that made it in `X-Genmem-Worker` (its pid); health and readiness are
each worker's own.
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request

from genmem.server.app import create_app

SETTINGS = "GENMEM_SERVE_SETTINGS"  # JSON keyword arguments of create_app, for the worker processes
WORKER_HEADER = "X-Genmem-Worker"
HEALTHCHECK_SECONDS = 60  # a worker that does not answer the supervisor's ping for this long is replaced;
# generous, because a starting worker imports torch and loads its sampler first


def serve_workers(workers: int, host: str, port: int, keep_alive: float, **settings) -> None:
    """Run `workers` processes of create_app(**settings) on host:port until interrupted.

    keep_alive: seconds an idle client connection stays open (uvicorn's timeout_keep_alive).
    """
    import uvicorn

    os.environ[SETTINGS] = json.dumps({key: str(value) if key == "memory_path" else value
                                       for key, value in settings.items()})
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host, port=port,
                timeout_keep_alive=keep_alive, timeout_worker_healthcheck=HEALTHCHECK_SECONDS)


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this factory in each)."""
    return with_worker_header(create_app(**json.loads(os.environ[SETTINGS])))


def with_worker_header(app: FastAPI) -> FastAPI:
    """Name the answering process in every reply, so that a client or a test can tell the replicas apart."""
    pid = str(os.getpid())

    @app.middleware("http")
    async def name_worker(request: Request, call_next):
        response = await call_next(request)
        response.headers[WORKER_HEADER] = pid
        return response

    return app
