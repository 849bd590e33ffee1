"""The HTTP face of the replay service: thin routes over genmem.service.ReplayService.

Health and model metadata follow the Open Inference Protocol (v2), so
orchestrators probe genmem like any model server; sampling has a route of
its own that answers with binary tensors (safetensors, npy, npz or PNG),
never JSON lists of numbers. Every route parses, calls the service and
serialises; everything it does is callable in process from genmem.service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genmem import errors
from genmem.server.metrics import MetricsMiddleware, ServiceMetrics
from genmem.server.schemas import ModelMetadata, ReloadReply, SampleRequest, TensorMetadata
from genmem.service import ReplayService
from genmem.summary import summarise

STATUS = {errors.NotAuthorized: 401, errors.UnknownClass: 404, errors.MemoryNotFound: 404,
          errors.TooManySamples: 413, errors.InvalidRequest: 422, errors.CorruptMemory: 500,
          errors.ServiceUnavailable: 503}

ERROR_REPLY = {"description": "What was wrong and what to do",
               "content": {"application/json": {"example": {"detail": "this memory has no class '9'; it holds 0, 1, "
                                                                      "2", "kind": "UnknownClass"}}}}

SAMPLE_HEADERS = {
    "X-Genmem-Version": "the version the images come from, e.g. v0003",
    "X-Genmem-Image-Shape": "channels, height, width of each image, e.g. 1,32,32",
    "X-Genmem-Dtype": "uint8 or float32",
    "X-Genmem-Labels": "the label of every image in run-length form, label:count in order, e.g. 3:100,5:100",
    "Server-Timing": "milliseconds spent sampling and encoding, e.g. sample;dur=12.1, encode;dur=0.8",
}


def status_for(exc: errors.GenmemError) -> int:
    return next((STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS), 400)


def readable(exc: RequestValidationError) -> str:
    """FastAPI's validation errors as one line that names each field."""
    problems = []
    for error in exc.errors():
        where = [str(part) for part in error["loc"] if part != "body"]
        field = ".".join(where) if where and error["type"] != "json_invalid" else "the body"
        problems.append(f"{field}: {error['msg']}")
    return f"malformed request ({'; '.join(problems)}); see /docs for the form of each route"


def model_metadata(name: str, versions: list[str], manifest: dict) -> ModelMetadata:
    g = manifest["generator"]
    return ModelMetadata(
        name=name, versions=versions, platform="genmem",
        inputs=[TensorMetadata(name="counts", datatype="INT64", shape=[len(manifest["classes"])]),
                TensorMetadata(name="seed", datatype="INT64", shape=[1])],
        outputs=[TensorMetadata(name="images", datatype="UINT8", shape=[-1, g["channels"], g["image_size"],
                                                                         g["image_size"]]),
                 TensorMetadata(name="labels", datatype="INT64", shape=[-1])])


def bearer_check(token: str | None):
    """A dependency that lets a request through only with `Authorization: Bearer <token>` (if a token is set)."""
    scheme = HTTPBearer(auto_error=False, description="The token given to `genmem serve --token` or GENMEM_TOKEN.")

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if token is None:
            return
        if credentials is None:
            raise errors.NotAuthorized("this server needs a token: send the header 'Authorization: Bearer <token>' "
                                       "with the token it was started with (--token or GENMEM_TOKEN)")
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise errors.NotAuthorized("the bearer token is wrong: send the token the server was started with "
                                       "(--token or GENMEM_TOKEN)")

    return check


async def watch(service: ReplayService, interval: float) -> None:
    """Pick up new versions without a restart; loading runs in a worker thread so requests keep flowing."""
    while True:
        await asyncio.sleep(interval)
        await run_in_threadpool(service.refresh)


def create_app(memory_path: str | os.PathLike, *, token: str | None = None, device: str = "cpu",
               precision: str = "auto", max_samples: int = 262144, watch_interval: float = 2.0,
               name: str | None = None) -> FastAPI:
    """A FastAPI app serving replay from the memory at `memory_path`; its latest version is loaded now.

    token: when set, every route but health and /metrics needs `Authorization: Bearer <token>`.
    watch_interval: seconds between checks for a new version (0: only POST /genmem/reload picks one up).
    name: the model name in /v2/models/{name} (default: the memory folder's name without its suffix).
    """
    service = ReplayService(memory_path, device, precision, max_samples)
    metrics = ServiceMetrics()
    model_name = name or Path(memory_path).stem

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher = asyncio.create_task(watch(service, watch_interval)) if watch_interval > 0 else None
        yield
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(title="genmem replay", lifespan=lifespan, description=(
        f"Replay of the classes of the generative memory `{memory_path}` for any classifier. Draw images with "
        f"`POST /genmem/sample`; see what the memory holds with `GET /genmem/info`. The Python client "
        f"`genmem.client.ReplayClient(url)` and `genmem.replay.ReplayStream(url)` use this API."))
    app.state.service = service
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(errors.GenmemError)
    async def genmem_error(request: Request, exc: errors.GenmemError) -> JSONResponse:
        metrics.errors.labels(type(exc).__name__).inc()
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.NotAuthorized) else None
        return JSONResponse({"detail": str(exc), "kind": type(exc).__name__}, status_for(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("InvalidRequest").inc()
        return JSONResponse({"detail": readable(exc), "kind": "InvalidRequest"}, 422)

    @app.get("/v2/health/live", tags=["health"], summary="Is the server up?",
             description="200 as long as the process answers (Open Inference Protocol). No token needed.")
    def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready", tags=["health"], summary="Can the server sample?",
             description="200 once a version of the memory is loaded, 503 before (Open Inference Protocol). "
                         "No token needed.", responses={503: {"description": "No version loaded yet"}})
    def ready() -> Response:
        return Response(status_code=200 if service.version is not None else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics",
             description="Requests by route and status, latency, images generated, errors by kind, the version "
                         "served. No token needed.", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def prometheus() -> Response:
        return Response(metrics.exposition(service.version), media_type="text/plain; version=0.0.4")

    def check_name(name: str) -> None:
        if name != model_name:
            raise errors.MemoryNotFound(f"this server has no model {name!r}; it serves {model_name!r}")

    guarded = APIRouter(dependencies=[Depends(bearer_check(token))], responses={401: ERROR_REPLY})

    @guarded.get("/v2/models/{name}", tags=["model"], summary="Model metadata (Open Inference Protocol)",
                 description="The memory as a model: its versions, and the tensors a sample request returns.",
                 responses={404: ERROR_REPLY})
    def model(name: str) -> ModelMetadata:
        check_name(name)
        return model_metadata(model_name, service.memory.versions(), service.memory.manifest(service.version))

    @guarded.get("/v2/models/{name}/versions/{version}", tags=["model"], summary="Metadata of one version",
                 description="Like the model's metadata, for one version (e.g. v0002).", responses={404: ERROR_REPLY})
    def model_version(name: str, version: str) -> ModelMetadata:
        check_name(name)
        manifest = service.memory.manifest(version)
        return model_metadata(model_name, [manifest["version"]], manifest)

    @guarded.get("/genmem/info", tags=["replay"], summary="What the memory holds",
                 description="Versions, classes (label, name, task), generator, growth and capacity per task, "
                             "storage: the summary `genmem info --json` prints, of the version served or "
                             "`?version=`.", responses={404: ERROR_REPLY, 503: ERROR_REPLY})
    def info(version: str | None = None) -> dict:
        return summarise(service.memory, version or service.sampler().version)

    @guarded.post("/genmem/sample", tags=["replay"], summary="Draw images of chosen classes",
                  response_class=Response, responses={
                      200: {"description": "The images (and labels) as bytes; the headers say what they hold",
                            "content": {"application/octet-stream": {}, "image/png": {}},
                            "headers": {name: {"description": text, "schema": {"type": "string"}}
                                        for name, text in SAMPLE_HEADERS.items()}},
                      404: ERROR_REPLY, 413: ERROR_REPLY, 422: ERROR_REPLY, 503: ERROR_REPLY},
                  description="Ask for `counts` per class (`{\"counts\": {\"3\": 100, \"cat\": 5}}`) or a `total` "
                              "spread over `classes` (`{\"total\": 4096}` spreads it over all). The reply is "
                              "binary: safetensors by default. Same seed, same images.\n\n"
                              "`curl -X POST localhost:8000/genmem/sample -H 'Content-Type: application/json' "
                              "-d '{\"counts\": {\"0\": 8}, \"format\": \"png\"}' -o samples.png`")
    def sample(request: SampleRequest) -> Response:
        reply = service.sample(request.counts, request.classes, request.total, request.seed, request.version,
                               request.format, request.dtype)
        metrics.samples.inc(reply.count)
        return Response(reply.body, media_type=reply.media_type, headers=reply.headers)

    @guarded.post("/genmem/reload", tags=["replay"], summary="Serve the newest version now",
                  description="Looks for a new version at once instead of waiting for the watcher, and returns the "
                              "version served. A version that fails to load is reported in `error`; the old one "
                              "stays served.")
    def reload() -> ReloadReply:
        return ReloadReply(version=service.refresh(), error=service.last_error)

    app.include_router(guarded)
    return app
