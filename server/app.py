"""The HTTP face of the replay service: thin routes over genmem.service.ReplayService.

Health and model metadata follow the Open Inference Protocol (v2), so
orchestrators probe genmem like any model server; sampling has a route of
its own that answers with binary tensors (safetensors, npy, npz or PNG),
never JSON lists of numbers. Every route parses, calls the service and
serialises; everything it does is callable in process from genmem.service.

With a token, everything but health and /metrics needs it, the API
description (/openapi.json, /docs, /redoc) included. No reply names a path on
the server's disk: the memory is called by its model name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genmem import errors
from genmem.admission import return_large_buffers_to_the_system
from genmem.names import shown
from genmem.server.metrics import MetricsMiddleware, ServiceMetrics
from genmem.server.schemas import ModelMetadata, ReloadReply, SampleRequest, TensorMetadata
from genmem.service import DEFAULT_BUDGET_MIB, DEFAULT_MAX_SAMPLES, EncodedSamples, ReplayService
from genmem.signing import SignatureCheck
from genmem.summary import summarise

SEND_CHUNK = 1 << 20  # bytes per write of a streamed reply
log = logging.getLogger("genmem.server")

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
        field = field if field.isprintable() and len(field) <= 60 else shown(field)  # a key the client made up
        problems.append(f"{field}: {' '.join(error['msg'].split())}")
    return f"malformed request ({'; '.join(problems)}); see /docs for the form of each route"


def model_metadata(name: str, versions: list[str], manifest: dict, service: ReplayService) -> ModelMetadata:
    g = manifest["generator"]
    return ModelMetadata(
        name=name, versions=versions, platform="genmem", served=service.version,
        damaged={version: damage.reason for version, damage in service.damaged.items()},
        inputs=[TensorMetadata(name="counts", datatype="INT64", shape=[len(manifest["classes"])]),
                TensorMetadata(name="seed", datatype="INT64", shape=[1])],
        outputs=[TensorMetadata(name="images", datatype="UINT8", shape=[-1, g["channels"], g["image_size"],
                                                                         g["image_size"]]),
                 TensorMetadata(name="labels", datatype="INT64", shape=[-1])])


async def streamed(reply: EncodedSamples) -> AsyncIterator[memoryview]:
    """The reply's parts in slices of SEND_CHUNK bytes; its claim on the work budget ends when it has been sent.

    Asynchronous, so that each slice goes out from the event loop rather than by a hop to a worker thread."""
    try:
        for part in reply.parts:
            view = memoryview(part)
            for start in range(0, view.nbytes, SEND_CHUNK):
                yield view[start: start + SEND_CHUNK]
    finally:
        if reply.claim is not None:
            reply.claim.release()


class LastResort:
    """ASGI middleware: an unexpected exception becomes a one-line 500 and a logged traceback, and the connection
    stays usable (Starlette would re-raise it to the server, which then drops the connection)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def note_start(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, note_start)
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if started:
                raise
            await JSONResponse({"detail": "the server failed unexpectedly; its log has the details",
                                "kind": "GenmemError"}, 500)(scope, receive, send)


async def watch(service: ReplayService, interval: float) -> None:
    """Pick up new versions without a restart; loading runs in a worker thread so requests keep flowing."""
    while True:
        await asyncio.sleep(interval)
        await run_in_threadpool(service.refresh)


DESCRIPTION = ("Replay of the classes of the generative memory `{name}` for any classifier. Draw images with "
               "`POST /genmem/sample`; see what the memory holds with `GET /genmem/info`. The Python client "
               "`genmem.client.ReplayClient(url)` and `genmem.replay.ReplayStream(url)` use this API.")


async def service_of(request: Request) -> ReplayService:
    return request.app.state.service


async def metrics_of(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def known_model(name: str, service: ReplayService = Depends(service_of)) -> None:
    if name != service.name:
        raise errors.MemoryNotFound(f"this server has no model {shown(name)}; it serves {service.name!r}")


BEARER = HTTPBearer(auto_error=False, description="The token given to `genmem serve --token` or GENMEM_TOKEN.")


async def bearer_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> None:
    """Let a request through only with `Authorization: Bearer <token>`, if the app has a token."""
    token = request.app.state.token
    if token is None:
        return
    if credentials is None:
        raise errors.NotAuthorized("this server needs a token: send the header 'Authorization: Bearer <token>' "
                                   "with the token it was started with (--token or GENMEM_TOKEN)")
    if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
        raise errors.NotAuthorized("the bearer token is wrong: send the token the server was started with "
                                   "(--token or GENMEM_TOKEN)")


health = APIRouter(tags=["health"])
guarded = APIRouter(dependencies=[Depends(bearer_token)], responses={401: ERROR_REPLY})
guarded_docs = APIRouter(dependencies=[Depends(bearer_token)], include_in_schema=False)  # with a token only


@health.get("/v2/health/live", summary="Is the server up?",
            description="200 as long as the process answers (Open Inference Protocol). No token needed.")
async def live() -> Response:
    return Response(status_code=200)


@health.get("/v2/health/ready", summary="Can the server sample?",
            description="200 once a version of the memory is loaded, 503 before (Open Inference Protocol). "
                        "No token needed.", responses={503: {"description": "No version loaded yet"}})
async def ready(service: ReplayService = Depends(service_of)) -> Response:
    return Response(status_code=200 if service.version is not None else 503)


@health.get("/metrics", summary="Prometheus metrics",
            description="Requests by route and status, latency, images generated, errors by kind, the version "
                        "served. No token needed.", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def prometheus(service: ReplayService = Depends(service_of), metrics: ServiceMetrics = Depends(metrics_of)
               ) -> Response:
    return Response(metrics.exposition(service.version), media_type="text/plain; version=0.0.4")


@guarded.get("/v2/models/{name}", tags=["model"], summary="Model metadata (Open Inference Protocol)",
             description="The memory as a model: its versions, and the tensors a sample request returns.",
             responses={404: ERROR_REPLY}, dependencies=[Depends(known_model)])
def model(service: ReplayService = Depends(service_of)) -> ModelMetadata:
    served = service.sampler().version
    return model_metadata(service.name, service.available(), service.memory.manifest(served), service)


@guarded.get("/v2/models/{name}/versions/{version}", tags=["model"], summary="Metadata of one version",
             description="Like the model's metadata, for one version (e.g. v0002).", responses={404: ERROR_REPLY},
             dependencies=[Depends(known_model)])
def model_version(version: str, service: ReplayService = Depends(service_of)) -> ModelMetadata:
    manifest = service.memory.manifest(version)
    return model_metadata(service.name, [manifest["version"]], manifest, service)


@guarded.get("/genmem/info", tags=["replay"], summary="What the memory holds",
             description="Versions, classes (label, name, task), generator, growth and capacity per task, "
                         "storage: the summary `genmem info --json` prints, of the version served or "
                         "`?version=`.", responses={404: ERROR_REPLY, 503: ERROR_REPLY})
def info(version: str | None = None, service: ReplayService = Depends(service_of)) -> dict:
    summary = summarise(service.memory, version or service.sampler().version)
    damaged = {name: damage.reason for name, damage in service.damaged.items()}
    return service.public({**summary, "memory": service.name, "versions": service.available(),
                           "served": service.version, "damaged": damaged})


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
def sample(request: SampleRequest, service: ReplayService = Depends(service_of),
           metrics: ServiceMetrics = Depends(metrics_of)) -> Response:
    reply = service.sample(request.counts, request.classes, request.total, request.seed, request.version,
                           request.format, request.dtype, keep_claim=True)
    metrics.samples.inc(reply.count)
    size = sum(memoryview(part).nbytes for part in reply.parts)
    return StreamingResponse(streamed(reply), media_type=reply.media_type,
                             headers={**reply.headers, "Content-Length": str(size)})


@guarded.post("/genmem/reload", tags=["replay"], summary="Serve the newest version now",
              description="Looks for a new version at once instead of waiting for the watcher, and returns the "
                          "version served. A version that fails to load is reported in `error`; the old one "
                          "stays served.")
def reload(service: ReplayService = Depends(service_of)) -> ReloadReply:
    return ReloadReply(version=service.refresh(), error=service.last_error)


@guarded_docs.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@guarded_docs.get("/docs")
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title)


@guarded_docs.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=request.app.title)


async def genmem_error(request: Request, exc: errors.GenmemError) -> JSONResponse:
    request.app.state.metrics.errors.labels(type(exc).__name__).inc()
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.NotAuthorized) else {}
    if isinstance(exc, errors.ServerBusy):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse({"detail": request.app.state.service.public(str(exc)), "kind": type(exc).__name__},
                        status_for(exc), headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    request.app.state.metrics.errors.labels("InvalidRequest").inc()
    return JSONResponse({"detail": readable(exc), "kind": "InvalidRequest"}, 422)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    """Watch for new versions while the app runs, if it has a watch interval."""
    interval = app.state.watch_interval
    watcher = asyncio.create_task(watch(app.state.service, interval)) if interval > 0 else None
    yield
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def create_app(memory_path: str | os.PathLike, *, token: str | None = None, device: str = "cpu",
               precision: str = "auto", max_samples: int = DEFAULT_MAX_SAMPLES, watch_interval: float = 2.0,
               name: str | None = None, budget_mib: float = DEFAULT_BUDGET_MIB, wait_seconds: float = 30.0,
               max_running: int = 2, require_signature: str | os.PathLike | None = None) -> FastAPI:
    """A FastAPI app serving replay from the memory at `memory_path`; its newest intact version is loaded now.

    token: when set, every route but health and /metrics needs `Authorization: Bearer <token>`, the API
    description and its /docs and /redoc pages included.
    watch_interval: seconds between checks for a new version (0: only POST /genmem/reload picks one up).
    name: the model name in /v2/models/{name} (default: the memory folder's name without its suffix).
    budget_mib, wait_seconds, max_running: the bounds on work in flight (genmem.admission).
    require_signature: a public key; only versions signed with its private key are served (genmem.signing).
    """
    model_name = name or Path(memory_path).stem
    return_large_buffers_to_the_system()  # so that the budget bounds the memory the process holds
    service = ReplayService(memory_path, device, precision, max_samples, name=model_name, budget_mib=budget_mib,
                            wait_seconds=wait_seconds, max_running=max_running,
                            signature=SignatureCheck(require_signature) if require_signature else None)
    hidden = {"openapi_url": None, "docs_url": None, "redoc_url": None} if token is not None else {}
    app = FastAPI(title="genmem replay", lifespan=lifespan, description=DESCRIPTION.format(name=model_name), **hidden)
    app.state.service, app.state.metrics = service, ServiceMetrics()
    app.state.token, app.state.watch_interval = token, watch_interval
    app.add_middleware(LastResort)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_exception_handler(errors.GenmemError, genmem_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    for router in (health, guarded, *([guarded_docs] if token is not None else [])):
        app.include_router(router)
    return app
