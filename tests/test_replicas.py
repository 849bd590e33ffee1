"""Replicated serving: `genmem serve --workers 2` on one port, and a Ray Serve replica on a local Ray instance."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from genmem.client import decode_samples
from genmem.memory import Memory
from genmem.benchmarks.subprocess_server import serving

PINNED = {"counts": {"0": 3, "1": 2}, "seed": 11, "version": "v0001", "dtype": "float32"}


def expected_images(memory_path):
    """What the local sampler draws for PINNED: the bytes every replica must reproduce."""
    images, labels = Memory(memory_path).sampler("v0001").sample({"0": 3, "1": 2}, seed=11, as_uint8=False)
    return images, labels


def replies_by_worker(url: str, workers: int, seconds: float = 120) -> dict[str, bytes]:
    """The first reply of each worker to PINNED, asked on fresh connections four at a time until `workers` have
    answered or `seconds` have passed: the kernel hands a connection to a worker waiting for one, and with several
    in flight a worker that is busy leaves the next to another, however the machine schedules them."""
    replies: dict[str, bytes] = {}
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(4) as pool:
        while len(replies) < workers and time.monotonic() < deadline:
            for response in pool.map(lambda _: httpx.post(f"{url}/genmem/sample", json=PINNED, timeout=30), range(4)):
                assert response.status_code == 200, response.text
                replies.setdefault(response.headers["X-Genmem-Worker"], response.content)
    return replies


def test_two_workers_serve_the_same_bytes_for_a_pinned_request(two_versions):
    with serving(two_versions, ["--workers", "2", "--device", "cpu", "--watch-interval", "0"]) as url:
        replies = replies_by_worker(url, 2)
        ready = httpx.get(f"{url}/v2/health/ready", timeout=10)
    assert len(replies) == 2, "only one worker answered in two minutes"
    first, second = replies.values()
    assert first == second
    images, labels = decode_samples(first)
    local_images, local_labels = expected_images(two_versions)
    assert images.equal(local_images) and labels.equal(local_labels)
    assert ready.status_code == 200 and ready.headers["X-Genmem-Worker"] in replies


def test_a_ray_serve_replica_answers_the_sampling_route(two_versions, tmp_path, monkeypatch):
    # Ray puts the driver's folder on its workers' path: from a checkout, its genmem/ would shadow the installed one.
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'genmem[ray]'); not tested")
    from genmem.benchmarks.replicas import on_ray

    with on_ray(two_versions, replicas=1) as url:  # waits for readiness: a loaded machine starts Ray slowly
        assert httpx.get(f"{url}/v2/health/ready", timeout=30).status_code == 200
        response = httpx.post(f"{url}/genmem/sample", json=PINNED, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["X-Genmem-Version"] == "v0001" and "X-Genmem-Worker" in response.headers
    images, labels = decode_samples(response.content)
    local_images, local_labels = expected_images(two_versions)
    assert images.equal(local_images) and labels.equal(local_labels)


@pytest.mark.parametrize("users_setting, seen", [(None, "60"), ("7", "7")])
def test_a_local_ray_instance_starts_with_a_patient_proxy_unless_the_user_chose(users_setting, seen, monkeypatch):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'genmem[ray]'); not tested")
    import ray

    from genmem.server.ray_app import init_ray

    setting = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"
    if users_setting is None:
        monkeypatch.delenv(setting, raising=False)
    else:
        monkeypatch.setenv(setting, users_setting)
    started_with = {}
    monkeypatch.setattr(ray, "init", lambda **options: started_with.update(os.environ, options=options))
    init_ray(num_cpus=2)
    assert started_with[setting] == seen and started_with["options"] == {"num_cpus": 2}
    assert os.environ.get(setting) == users_setting  # this process's environment is as it was
