"""`genmem serve`: replay from a memory over HTTP, for classifiers in other processes or on other machines."""

from __future__ import annotations

from pathlib import Path

import click

from genmem.cli.common import DEVICE_HELP, friendly_errors


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
              help="Require 'Authorization: Bearer TOKEN' on every route but health and /metrics.")
@click.option("--max-samples", type=click.IntRange(1), default=262144, show_default=True,
              help="Most images one request may ask for; larger requests get 413.")
@click.option("--watch-interval", type=click.FloatRange(0), default=2.0, show_default=True,
              help="Seconds between checks for a new version (0: only POST /genmem/reload picks one up).")
@click.option("--name", help="Model name in /v2/models/NAME (default: the memory folder's name without .mem).")
@friendly_errors
def serve(memory, host, port, device, precision, token, max_samples, watch_interval, name):
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
    """
    import uvicorn

    from genmem.server.app import create_app

    app = create_app(memory, token=token, device=device, precision=precision, max_samples=max_samples,
                     watch_interval=watch_interval, name=name)
    click.echo(f"serving {memory} ({app.state.service.version or 'no version yet'}) on http://{host}:{port}; "
               f"API docs at http://{host}:{port}/docs")
    uvicorn.run(app, host=host, port=port)
