"""The replay server as a Ray Serve deployment: the same FastAPI app, in replicas spread over a Ray cluster.

Each replica builds its own app (create_app) when Ray starts it, so it loads
its own sampler from the memory; every node must see the memory at the same
path (shared storage), and since versions are immutable a pinned request
gets the same bytes from any replica (same seed, device kind and precision).
Ray's controller calls each replica's `check_health`, which fails while the
replica has no version to serve (what /v2/health/ready reports), and
replaces replicas that fail it. Replies carry `X-Genmem-Worker` (the
replica's pid), as with `genmem serve --workers`.

    genmem serve /shared/digits.mem --ray --replicas 4        # on a node of the cluster (or a local Ray)
    serve run genmem.server.ray_app:build memory_path=/shared/digits.mem replicas=4
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from genmem.server.app import create_app
from genmem.server.workers import with_worker_header


class BodiesAsBytes:
    """ASGI middleware: reply bodies as bytes. Ray pickles every message on its way to the proxy, and the app
    streams its replies as memoryviews of the encoded samples, which pickle cannot take."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_bytes(message):
            if message["type"] == "http.response.body" and isinstance(message.get("body"), memoryview):
                message = {**message, "body": bytes(message["body"])}
            await send(message)

        await self.app(scope, receive, send_bytes)


@serve.deployment(name="genmem", health_check_period_s=10)
@serve.ingress()
class ReplayReplica:
    """One replica: a whole genmem replay server, built on the node Ray places it on."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.server: FastAPI | None = None  # not `app`: the ingress wrapper owns that name

    def __serve_build_asgi_app__(self) -> FastAPI:
        self.server = with_worker_header(create_app(**self.settings))
        self.server.add_middleware(BodiesAsBytes)
        return self.server

    def check_health(self) -> None:
        if self.server is not None and self.server.state.service.version is None:
            raise RuntimeError(f"no version of {self.settings['memory_path']} is loaded")


def deployment(replicas: int = 1, **settings) -> Application:
    """The application: `replicas` ReplayReplicas of create_app(**settings); a CUDA device gives each a GPU."""
    gpus = 1 if str(settings.get("device", "cpu")).startswith("cuda") else 0
    options = {"num_cpus": 1, "num_gpus": gpus}
    settings["memory_path"] = str(settings["memory_path"])
    return ReplayReplica.options(num_replicas=replicas, ray_actor_options=options).bind(settings)


def build(args: dict[str, str]) -> Application:
    """`serve run genmem.server.ray_app:build memory_path=PATH [replicas=N] [device=cpu] [precision=auto] ...`."""
    settings = dict(args)
    if "memory_path" not in settings:
        raise ValueError("give the memory: serve run genmem.server.ray_app:build memory_path=/shared/digits.mem")
    numbers = {"replicas": int, "max_samples": int, "watch_interval": float}
    for key, kind in numbers.items():
        if key in settings:
            settings[key] = kind(settings[key])
    return deployment(**settings)


def init_ray(**options) -> None:
    """ray.init, with a patient proxy where it starts a local instance.

    Ray Serve kills an HTTP proxy that is not ready 5 s after it starts, and serve.start then fails: on a busy
    machine with few cores a proxy takes longer than that. A local instance's processes inherit this process's
    environment as it is when they start, so they get a minute unless the user set
    RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S; a cluster started with `ray start` keeps its own setting.
    """
    import ray

    setting = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"
    chosen = setting in os.environ
    os.environ.setdefault(setting, "60")
    try:
        ray.init(**options)
    finally:
        if not chosen:
            del os.environ[setting]


def serve_on_ray(replicas: int, host: str, port: int, **settings) -> None:
    """Start Serve on the Ray cluster this process can reach (a local one if none) and serve until Ctrl-C."""
    init_ray()
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(replicas, **settings), name="genmem", route_prefix="/", blocking=True)
