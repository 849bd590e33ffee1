"""`genmem serve`: replay from a memory over HTTP, for classifiers in other processes or on other machines."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from genmem.cli.common import DEVICE_HELP, FiniteFloatRange, friendly_errors
from genmem.service import DEFAULT_BUDGET_MIB, DEFAULT_MAX_SAMPLES

KEEP_ALIVE_SECONDS = 30


def read_token(path: Path) -> str:
    """The token on the first line of a file: a file only its owner can read keeps it from other local users."""
    lines = path.read_text().strip().splitlines()
    if not lines or not lines[0].strip():
        raise click.BadParameter(f"{path} holds no token", param_hint="--token-file")
    return lines[0].strip()


def token_from(token: str | None, token_file: Path | None) -> str | None:
    """The token to require, from --token-file, GENMEM_TOKEN or --token (which gets a warning)."""
    if token_file is not None:
        return read_token(token_file)
    if token and click.get_current_context().get_parameter_source("token") == ParameterSource.COMMANDLINE:
        click.echo("warning: a --token on the command line is visible to every user of this machine (ps); "
                   "use GENMEM_TOKEN or --token-file", err=True)
    return token


@click.command()
@click.argument("memory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 listens on every interface (then set a --token).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--precision", default="auto", show_default=True,
              help="Arithmetic of the generator: auto (float16 on CUDA, float32 on the CPU), float32, float16 or "
                   "bfloat16.")
@click.option("--token", envvar="GENMEM_TOKEN", show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' on every route but health and /metrics (the API docs "
                   "/docs, /redoc and /openapi.json included; without a token they are open). On the command "
                   "line a token is visible to every local user (ps): prefer GENMEM_TOKEN or --token-file.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the token from the first line of this file instead.")
@click.option("--require-signature", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="KEY.pub", help="Serve only versions signed (`genmem sign`) with the private key of this public "
                                      "key; others are named as damaged.")
@click.option("--max-samples", type=click.IntRange(1), default=DEFAULT_MAX_SAMPLES, show_default=True,
              help="Most images one request may ask for; larger requests get 413.")
@click.option("--max-in-flight", "budget_mib", type=FiniteFloatRange(1), default=DEFAULT_BUDGET_MIB,
              show_default=True, help="MiB of images being generated or sent at once; requests beyond it wait, "
                                      "then get 503 with Retry-After (clients retry).")
@click.option("--watch-interval", type=FiniteFloatRange(0), default=2.0, show_default=True,
              help="Seconds between checks for a new version (0: only POST /genmem/reload picks one up).")
@click.option("--name", help="Model name in /v2/models/NAME (default: the memory folder's name without .mem).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Server processes on this machine behind the one port, each with its own sampler; replies "
                   "name the process in X-Genmem-Worker.")
@click.option("--ray", "on_ray", is_flag=True,
              help="Serve as a Ray Serve deployment on the Ray cluster this machine joined (or a local one); every "
                   "node must see MEMORY at the same path. Needs genmem[ray].")
@click.option("--replicas", type=click.IntRange(1), default=1, show_default=True,
              help="With --ray: replicas of the deployment, spread over the cluster.")
@friendly_errors
def serve(memory, host, port, device, precision, token, token_file, require_signature, max_samples, budget_mib,
          watch_interval, name, workers, on_ray, replicas):
    """Serve replay from MEMORY over HTTP until interrupted (Ctrl-C).

    The latest version is loaded at start; a version that a running
    `genmem learn-task` writes is served as soon as it is complete, without a
    restart, while clients that pinned an older version keep it. API docs:
    http://HOST:PORT/docs.

    \b
    From the shell:
      genmem serve digits.mem --port 8000
      curl -X POST localhost:8000/genmem/sample -H 'Content-Type: application/json' \\
           -d '{"counts": {"0": 8, "1": 8}, "format": "png"}' -o samples.png
      curl localhost:8000/genmem/info
    \b
    From Python (the same source and stream as from a local memory, one argument apart):
      from genmem.client import ReplayClient
      images, labels = ReplayClient("http://127.0.0.1:8000").sample({"0": 8, "1": 8}, seed=0)
      from genmem.replay import ReplayStream
      for images, labels in ReplayStream("http://127.0.0.1:8000", batch_size=128, batches=100):
          ...   # uint8 [128, C, H, W], balanced over the memory's classes
    \b
    Replicas (a pinned request gets the same bytes from any of them):
      genmem serve digits.mem --workers 4                   # 4 processes on this machine, one port
      genmem serve /shared/digits.mem --ray --replicas 8    # Ray Serve, over a Ray cluster
    """
    import uvicorn

    from genmem.server.app import create_app

    token = token_from(token, token_file)
    settings = dict(memory_path=memory, token=token, device=device, precision=precision, max_samples=max_samples,
                    watch_interval=watch_interval, name=name, budget_mib=budget_mib,
                    require_signature=str(require_signature) if require_signature else None)
    if on_ray:
        try:
            from genmem.server.ray_app import serve_on_ray
        except ImportError:
            raise click.ClickException("--ray needs Ray Serve: pip install 'genmem[ray]'") from None

        click.echo(f"serving {memory} with {replicas} Ray Serve replica(s) on http://{host}:{port}")
        return serve_on_ray(replicas, host, port, **settings)
    if workers > 1:
        from genmem.server.workers import serve_workers

        click.echo(f"serving {memory} with {workers} worker processes on http://{host}:{port}")
        return serve_workers(workers, host, port, KEEP_ALIVE_SECONDS, **settings)
    app = create_app(**settings)
    click.echo(f"serving {memory} ({app.state.service.describe()}) on http://{host}:{port}; "
               f"API docs at http://{host}:{port}/docs{' (with the token)' if token else ''}")
    # Idle keep-alive connections close after 30 s, not uvicorn's 5: a client that reuses one just as the
    # server closes it sees a dropped connection (ReplayClient retries those; fewer happen this way).
    uvicorn.run(app, host=host, port=port, timeout_keep_alive=KEEP_ALIVE_SECONDS)
