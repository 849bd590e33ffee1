"""The server's memory under load: eight concurrent requests of the largest size stay within a stated bound.

Bound (README, `genmem serve --max-in-flight`): while sample requests run, the server's peak resident memory
grows by at most the in-flight budget plus 16 MiB over what it used after loading and a warm-up (eight small
requests at once, so that its threads exist before the baseline): the images in flight are counted against the
budget, each is held once (sent as views, not copied) in a mapping returned to the system when it has been sent,
and generation works in chunks of 256 images on the sampling threads whatever the request's size (the fixed
16 MiB, 4 of them headroom). Measured on 2 busy cores: 24 to 27 MiB with a 20 MiB budget, 41 to 43 MiB with the
budget lifted (1,024 MiB), which this test then fails.
"""

import threading

import httpx
from safetensors.torch import load as load_safetensors

from genmem.benchmarks.serve_load import peak_rss_mib
from genmem.benchmarks.subprocess_server import serving_process

MAX_SAMPLES = 16000  # 1x16x16 float32 images: 16 MB per reply, 131 MB for eight at once without a bound
BUDGET_MIB = 20
WORKING_MIB = 16


def eight_at_once(ask, **options) -> None:
    threads = [threading.Thread(target=ask, args=(seed,), kwargs=options) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_eight_concurrent_maximum_size_requests_stay_within_the_stated_bound(two_versions):
    options = ["--device", "cpu", "--watch-interval", "0", "--max-samples", str(MAX_SAMPLES),
               "--max-in-flight", str(BUDGET_MIB)]
    with serving_process(two_versions, options) as (url, server):
        body = {"total": MAX_SAMPLES, "dtype": "float32"}
        replies = []

        def ask(seed: int, total: int = MAX_SAMPLES) -> None:
            reply = httpx.post(f"{url}/genmem/sample", json={**body, "seed": seed, "total": total}, timeout=120)
            replies.append(reply.status_code)
            if reply.status_code == 200:
                assert load_safetensors(reply.content)["images"].shape == (total, 1, 16, 16)

        eight_at_once(ask, total=100)  # the warm-up: the server's threads and code paths exist before the baseline
        before = peak_rss_mib(server.pid)
        eight_at_once(ask)
        growth = peak_rss_mib(server.pid) - before
    assert replies == [200] * 16, replies
    assert growth <= BUDGET_MIB + WORKING_MIB, f"the server's peak memory grew by {growth:.0f} MiB"
