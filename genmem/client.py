"""A replay source served over HTTP by `genmem serve`, usable wherever a local sampler is.

    replay = ReplayClient("http://127.0.0.1:8000", token="...")
    images, labels = replay.sample({"3": 100, "cat": 5}, seed=0)     # CPU tensors, as from a local Sampler

The version is fixed when the client connects (the one asked for, or the one
the server serves then), so a training run keeps drawing from the same
version while the server picks up newer ones. Images travel as safetensors
bytes over one persistent connection; the server's errors arrive as the same
GenmemError subclasses, with the same messages, as a local memory raises.

Every request the client makes is idempotent (the same sample request gives
the same images), so one that fails on the way, with a dropped connection or
a 503 with Retry-After from a busy server, is sent again after a growing,
jittered pause, up to `retries` times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

import httpx
import torch
from safetensors.torch import load as load_safetensors

from genmem import errors
from genmem.artifact import ClassTable
from genmem.errors import GenmemError, ServiceUnavailable


def decode_samples(body: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from a safetensors sample reply."""
    tensors = load_safetensors(body)
    return tensors["images"], tensors["labels"]


def server_error(response: httpx.Response) -> GenmemError:
    """The GenmemError a failed reply stands for: the server names its kind and says what to do."""
    try:
        reply = response.json()
        message, kind = str(reply["detail"]), str(reply.get("kind"))
    except (ValueError, KeyError, TypeError):
        message, kind = f"HTTP {response.status_code}: {response.text[:200]}", ""
    error_class = getattr(errors, kind, None)
    if not (isinstance(error_class, type) and issubclass(error_class, GenmemError)):
        error_class = GenmemError
    return error_class(f"the genmem server at {response.url.scheme}://{response.url.netloc.decode()} says: {message}")


class ReplayClient:
    """The `ReplaySource` of a genmem server: `.classes`, `.version`, `.image_shape` and `.sample()`."""

    def __init__(self, url: str, token: str | None = None, version: str | None = None, timeout: float = 120.0,
                 retries: int = 5, backoff: float = 0.1):
        self.url = url.rstrip("/")
        self.retries, self.backoff = retries, backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        try:
            info = self._call("GET", "/genmem/info", params={"version": version} if version else None).json()
        except GenmemError:
            self.http.close()
            raise
        self.version: str = info["version"]
        self.classes = ClassTable.from_manifest(info)
        generator = info["generator"]
        self.image_shape = (generator["channels"], generator["image_size"], generator["image_size"])

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        attempt = 0
        while True:
            pause = self.backoff * 2 ** attempt * (0.5 + random.random())
            attempt += 1
            try:
                response = self.http.request(method, path, **kwargs)
            except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:  # the server may still be busy with it: no pile-on
                raise ServiceUnavailable(f"the genmem server at {self.url} did not answer in time ({exc}); ask for "
                                         f"fewer images per request or raise the client's timeout") from None
            except httpx.TransportError as exc:
                if attempt > self.retries:
                    raise ServiceUnavailable(f"cannot reach the genmem server at {self.url} ({exc}); start it "
                                             f"with `genmem serve MEMORY` or check the URL") from None
                time.sleep(pause)
                continue
            retry_after = response.headers.get("Retry-After", "")
            if response.status_code == 503 and retry_after.isascii() and retry_after.isdigit() \
                    and attempt <= self.retries:
                time.sleep(max(pause, min(float(retry_after), 30.0)))
                continue
            if response.is_error:
                raise server_error(response)
            return response

    def sample_request(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True) -> dict:
        """The JSON body of a sample request. Classes travel by name, which the server resolves exactly."""
        by_name = {self.classes.resolve(key).name: int(n) for key, n in counts.items()}
        return {"counts": by_name, "seed": seed, "version": self.version, "format": "safetensors",
                "dtype": "uint8" if as_uint8 else "float32"}

    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels for {class (label or name): count}, exactly as the local Sampler draws them."""
        response = self._call("POST", "/genmem/sample", json=self.sample_request(counts, seed, as_uint8))
        return decode_samples(response.content)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "ReplayClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
