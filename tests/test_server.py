"""The HTTP server: every route, format, error and metric through FastAPI's TestClient, and one real server on
a loopback port that the Python client and ReplayStream use exactly like a local memory."""

import contextlib
import io
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from safetensors.torch import load as load_safetensors

from genmem.cli.main import main
from genmem.client import ReplayClient
from genmem.errors import MemoryNotFound, NotAuthorized, ServiceUnavailable, UnknownClass
from genmem.grids import PAD
from genmem.memory import Memory
from genmem.replay import ReplayStream
from genmem.server.app import create_app

from tiny import TINY_SIZE, publish, tiny_config, tiny_set

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def client(two_versions):
    """An app over the two-version memory, without a token or a watcher."""
    with TestClient(create_app(two_versions, watch_interval=0, max_samples=50)) as client:
        yield client


@pytest.fixture
def memory_copy(two_versions, tmp_path):
    return Memory(shutil.copytree(two_versions, tmp_path / "m"))


def sample(client, **body):
    return client.post("/genmem/sample", json=body)


def test_health_and_readiness(two_versions, tmp_path):
    with TestClient(create_app(tmp_path / "m", watch_interval=0)) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
        reply = sample(client, total=1)
        assert reply.status_code == 503 and "has no finished version yet" in reply.json()["detail"]
        publish(two_versions / "versions" / "v0001", tmp_path / "m", "v0001")
        assert client.post("/genmem/reload").json() == {"version": "v0001", "error": None}
        assert client.get("/v2/health/ready").status_code == 200


def test_model_metadata_in_open_inference_protocol_form(client):
    meta = client.get("/v2/models/m").json()
    assert meta["name"] == "m" and meta["platform"] == "genmem" and meta["versions"] == ["v0001", "v0002"]
    assert {"name": "images", "datatype": "UINT8", "shape": [-1, 1, TINY_SIZE, TINY_SIZE]} in meta["outputs"]
    assert {"name": "counts", "datatype": "INT64", "shape": [3]} in meta["inputs"]
    first = client.get("/v2/models/m/versions/v0001").json()
    assert first["versions"] == ["v0001"] and {"name": "counts", "datatype": "INT64", "shape": [2]} in first["inputs"]
    unknown = client.get("/v2/models/digits")
    assert unknown.status_code == 404 and "no model 'digits'; it serves 'm'" in unknown.json()["detail"]
    missing = client.get("/v2/models/m/versions/v0007")
    assert missing.status_code == 404 and "no version 'v0007'; it has v0001, v0002" in missing.json()["detail"]


def test_info_is_the_summary_of_the_served_or_the_asked_version(client):
    info = client.get("/genmem/info").json()
    assert info["version"] == "v0002" and [c["label"] for c in info["classes"]] == [0, 1, 2]
    assert info["generator"]["image_size"] == TINY_SIZE and len(info["tasks"]) == 2
    old = client.get("/genmem/info", params={"version": "v0001"}).json()
    assert old["version"] == "v0001" and [c["label"] for c in old["classes"]] == [0, 1]


def label_runs(header: str) -> list[int]:
    return [int(label) for run in header.split(",") for label, count in [run.split(":")] for _ in range(int(count))]


def test_every_format_decodes_with_its_shape_dtype_and_labels(client):
    reply = sample(client, counts={"2": 3, "0": 2}, seed=1)
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["x-genmem-version"] == "v0002" and reply.headers["x-genmem-image-shape"] == "1,16,16"
    tensors = load_safetensors(reply.content)
    assert tensors["images"].shape == (5, 1, 16, 16) and tensors["images"].dtype == torch.uint8
    assert tensors["labels"].tolist() == [2, 2, 2, 0, 0] == label_runs(reply.headers["x-genmem-labels"])

    floats = load_safetensors(sample(client, counts={"2": 3, "0": 2}, seed=1, dtype="float32").content)["images"]
    assert floats.dtype == torch.float32 and floats.abs().max() <= 1
    assert torch.equal(((floats + 1) * 127.5).round().to(torch.uint8), tensors["images"])

    npy = sample(client, counts={"2": 3, "0": 2}, seed=1, format="npy")
    assert np.array_equal(np.load(io.BytesIO(npy.content), allow_pickle=False), tensors["images"].numpy())
    assert label_runs(npy.headers["x-genmem-labels"]) == [2, 2, 2, 0, 0]

    with np.load(io.BytesIO(sample(client, counts={"2": 3, "0": 2}, seed=1, format="npz").content)) as npz:
        assert np.array_equal(npz["images"], tensors["images"].numpy())
        assert npz["labels"].tolist() == [2, 2, 2, 0, 0]

    png = sample(client, total=12, format="png")
    assert png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as grid:
        cell = 2 * TINY_SIZE + PAD
        assert grid.size[1] == 3 * cell + PAD, "one row per class"
        assert 0 < grid.size[0] - 4 * cell - PAD < cell, "4 per row after a caption as narrow as the names"


def test_same_seed_same_images_and_a_total_spreads_like_counts(client):
    def images(**body):
        return load_safetensors(sample(client, **body).content)["images"]

    assert torch.equal(images(counts={"0": 4, "1": 4}, seed=3), images(counts={"0": 4, "1": 4}, seed=3))
    assert not torch.equal(images(counts={"0": 4, "1": 4}, seed=3), images(counts={"0": 4, "1": 4}, seed=4))
    assert torch.equal(images(total=7, seed=5), images(counts={"0": 3, "1": 2, "2": 2}, seed=5))
    spread = sample(client, classes=["2", 1], total=5, seed=5)
    assert label_runs(spread.headers["x-genmem-labels"]) == [2, 2, 2, 1, 1]


def test_errors_say_what_was_wrong_with_the_right_status(client):
    def error(**body):
        reply = sample(client, **body)
        return reply.status_code, reply.json()["detail"]

    status, message = error(counts={"9": 1})
    assert status == 404 and "no class '9'; it holds 0, 1, 2" in message
    status, message = error(total=1, version="v0005")
    assert status == 404 and "no version 'v0005'; it has v0001, v0002" in message
    status, message = error(total=51)
    assert status == 413 and "asks for 51 images but this server allows at most 50 per request" in message
    for body, field in [({"counts": {"0": -1}}, "counts.0: Input should be greater than or equal to 0"),
                        ({"counts": [1, 2]}, "counts: Input should be a valid dictionary"),
                        ({"count": {"0": 1}}, "count: Extra inputs are not permitted"),
                        ({"total": 1, "format": "jpg"}, "format: Input should be 'safetensors'"),
                        ({"total": 1, "dtype": "int8"}, "dtype: Input should be 'uint8' or 'float32'"),
                        ({"total": 1, "counts": {"0": 1}}, 'give either "counts", or "total"'),
                        ({}, "say how many images")]:
        status, message = error(**body)
        assert status == 422 and field in message, message
    broken = client.post("/genmem/sample", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422 and "the body: JSON decode error" in broken.json()["detail"]


def test_a_token_guards_every_route_but_health_and_metrics(two_versions):
    with TestClient(create_app(two_versions, token=TOKEN, watch_interval=0)) as client:
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert client.get(path).status_code == 200
        for method, path in [("GET", "/v2/models/m"), ("GET", "/genmem/info"), ("POST", "/genmem/sample"),
                             ("POST", "/genmem/reload")]:
            missing = client.request(method, path, json={"total": 1})
            assert missing.status_code == 401 and "needs a token" in missing.json()["detail"]
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = client.request(method, path, json={"total": 1}, headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 401 and "token is wrong" in wrong.json()["detail"]
            right = client.request(method, path, json={"total": 1}, headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200, (path, right.text)


def metric_values(client) -> dict:
    text = client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_samples_and_errors_per_app(two_versions):
    with TestClient(create_app(two_versions, watch_interval=0)) as client, \
            TestClient(create_app(two_versions, watch_interval=0)) as other:
        sample(client, counts={"0": 3, "1": 2})
        sample(client, total=4)
        sample(client, counts={"7": 1})
        client.get("/v2/models/m/versions/v0001")
        sample(other, total=1)
        values = metric_values(client)
    route = ("route", "/genmem/sample")
    assert values[("genmem_requests_total", (("method", "POST"), route, ("status", "200")))] == 2
    assert values[("genmem_requests_total", (("method", "POST"), route, ("status", "404")))] == 1
    assert values[("genmem_requests_total", (("method", "GET"), ("route", "/v2/models/{name}/versions/{version}"),
                                             ("status", "200")))] == 1
    assert values[("genmem_samples_total", ())] == 9, "the other app's image is not counted here"
    assert values[("genmem_errors_total", (("kind", "UnknownClass"),))] == 1
    assert values[("genmem_request_seconds_count", (route,))] == 3
    assert values[("genmem_served_version_info", (("version", "v0002"),))] == 1


def wait_for(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_task_learned_while_serving_is_picked_up_by_the_watcher(memory_copy):
    with TestClient(create_app(memory_copy.path, watch_interval=0.05)) as client:
        before = load_safetensors(sample(client, counts={"1": 2}, seed=2).content)["images"]
        memory_copy.learn_task(tiny_set(), ["3"], config=tiny_config(seed=2), progress=False)
        assert wait_for(lambda: client.get("/genmem/info").json()["version"] == "v0003")
        reply = sample(client, counts={"3": 2, "1": 2}, seed=2)
        assert reply.status_code == 200 and reply.headers["x-genmem-labels"] == "3:2,1:2"
        pinned = sample(client, counts={"1": 2}, seed=2, version="v0002")
        assert pinned.headers["x-genmem-version"] == "v0002"
        assert torch.equal(load_safetensors(pinned.content)["images"], before)


def test_a_damaged_new_version_does_not_take_the_server_down(memory_copy):
    with TestClient(create_app(memory_copy.path, watch_interval=0.05)) as client:
        publish(memory_copy.path / "versions" / "v0002", memory_copy.path, "v0003", damaged=True)
        reload = client.post("/genmem/reload").json()
        assert reload["version"] == "v0002"
        assert reload["error"].startswith("version v0003 could not be loaded")
        assert "version v0003 is damaged" in reload["error"]
        time.sleep(0.2)  # the watcher runs meanwhile, and keeps serving the old version too
        assert client.get("/v2/health/ready").status_code == 200
        reply = sample(client, total=3)
        assert reply.status_code == 200 and reply.headers["x-genmem-version"] == "v0002"


@contextlib.contextmanager
def real_server(app):
    """The app served by uvicorn in a thread on a free loopback port; stopped on exit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    # uvicorn closes a keep-alive connection idle for 5 s; a loaded 2-core machine can pause a test that long
    # between requests, and the tests that check a connection survives bad input mean bad input, not idleness.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=300))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, 30), "the server did not start"
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
    assert not thread.is_alive(), "the server did not stop"


def test_the_client_and_a_stream_over_http_equal_the_local_memory(two_versions):
    with real_server(create_app(two_versions, token=TOKEN, watch_interval=0)) as url:
        with ReplayClient(url, token=TOKEN) as replay:
            assert replay.version == "v0002" and replay.image_shape == (1, TINY_SIZE, TINY_SIZE)
            assert [c.label for c in replay.classes] == [0, 1, 2]
            local = Memory(two_versions).sampler()
            for as_uint8 in (True, False):
                remote_images, remote_labels = replay.sample({2: 3, "0": 4}, seed=6, as_uint8=as_uint8)
                local_images, local_labels = local.sample({2: 3, "0": 4}, seed=6, as_uint8=as_uint8)
                assert torch.equal(remote_images, local_images) and torch.equal(remote_labels, local_labels)
            with pytest.raises(UnknownClass, match="no class 8"):
                replay.sample({8: 1})

        over_http = ReplayStream(url, classes=[2, "0"], batch_size=7, batches=3, seed=4, token=TOKEN)
        on_disk = ReplayStream(two_versions, classes=[2, "0"], batch_size=7, batches=3, seed=4)
        pairs = list(zip(over_http, on_disk, strict=True))
        assert len(pairs) == 3 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)
        pinned = next(iter(ReplayStream(url, version="v0001", batch_size=4, token=TOKEN)))
        assert set(pinned[1].tolist()) == {0, 1}

        with pytest.raises(NotAuthorized, match="says: the bearer token is wrong"):
            ReplayClient(url, token="guess")
        with pytest.raises(MemoryNotFound, match="no version 'v0009'; it has v0001, v0002"):
            ReplayClient(url, token=TOKEN, version="v0009")
    with pytest.raises(ServiceUnavailable, match=f"cannot reach the genmem server at {url}"):
        ReplayClient(url, token=TOKEN, timeout=5, retries=1)


def test_serve_refuses_a_missing_memory_and_a_bad_setting_in_one_line(two_versions, tmp_path):
    missing = CliRunner().invoke(main, ["serve", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "does not exist" in missing.output
    bad = CliRunner().invoke(main, ["serve", str(two_versions), "--device", "cpu", "--precision", "float8"])
    assert bad.exit_code != 0 and "Error: unknown precision 'float8'" in bad.output and "Traceback" not in bad.output


def test_a_server_started_on_a_damaged_newest_version_serves_the_newest_intact_one(memory_copy):
    masks = memory_copy.path / "versions" / "v0002" / "masks.safetensors"
    data = bytearray(masks.read_bytes())
    data[len(data) // 2] ^= 0xFF
    masks.write_bytes(bytes(data))
    with TestClient(create_app(memory_copy.path, watch_interval=0)) as client:
        assert client.get("/v2/health/ready").status_code == 200
        meta = client.get("/v2/models/m").json()
        assert meta["versions"] == ["v0001"] and meta["served"] == "v0001"
        assert "masks.safetensors fails its sha256" in meta["damaged"]["v0002"]
        info = client.get("/genmem/info").json()
        assert info["version"] == "v0001" and info["versions"] == ["v0001"] and "v0002" in info["damaged"]
        assert sample(client, total=2).headers["x-genmem-version"] == "v0001"
        for reply in (meta, info):
            assert str(memory_copy.path) not in str(reply)


def test_no_reply_names_a_path_on_the_server(client, two_versions):
    replies = [client.get("/genmem/info"), client.get("/openapi.json"), client.get("/v2/models/m/versions/v0009"),
               sample(client, total=1, version="v0009"), client.post("/genmem/reload"), sample(client, total=2)]
    assert client.get("/genmem/info").json()["memory"] == "m"
    for reply in replies:
        assert str(two_versions).encode() not in reply.content
        assert all(str(two_versions) not in value for value in reply.headers.values())
    assert "memory m has no version 'v0009'" in replies[2].json()["detail"]


def test_with_a_token_the_api_description_needs_it_too(two_versions):
    with TestClient(create_app(two_versions, token=TOKEN, watch_interval=0)) as guarded, \
            TestClient(create_app(two_versions, watch_interval=0)) as open_server:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert guarded.get(path).status_code == 401
            allowed = guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert allowed.status_code == 200 and open_server.get(path).status_code == 200
            if path == "/openapi.json":
                assert allowed.json() == open_server.get(path).json()
            else:
                assert b"/openapi.json" in allowed.content
        assert "/genmem/sample" in guarded.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()[
            "paths"]


def test_a_busy_server_answers_503_with_retry_after_and_the_client_retries(two_versions):
    app = create_app(two_versions, watch_interval=0, budget_mib=1, wait_seconds=0.05)
    hog = app.state.service.admission.claim(2**20)  # the whole budget, as a large request in flight would hold it
    with real_server(app) as url:
        with TestClient(app) as client:
            busy = sample(client, total=1)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert busy.json()["kind"] == "ServerBusy" and "busy" in busy.json()["detail"]
        with ReplayClient(url) as replay:
            threading.Timer(0.3, hog.release).start()
            images, labels = replay.sample({"0": 2}, seed=1)  # refused, then retried after Retry-After
            assert images.shape == (2, 1, TINY_SIZE, TINY_SIZE) and labels.tolist() == [0, 0]
        with ReplayClient(url, retries=0) as impatient:
            app.state.service.admission.claim(2**20)
            with pytest.raises(ServiceUnavailable, match="says: the server is busy"):
                impatient.sample({"0": 1})


def test_the_client_retries_a_dropped_connection(two_versions, monkeypatch):
    with real_server(create_app(two_versions, watch_interval=0)) as url, ReplayClient(url, backoff=0.01) as replay:
        real_request, failures = replay.http.request, []

        def flaky(*args, **kwargs):
            if len(failures) < 2:
                failures.append(1)
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            return real_request(*args, **kwargs)

        monkeypatch.setattr(replay.http, "request", flaky)
        images, _ = replay.sample({"1": 3}, seed=2)
        assert len(failures) == 2 and images.shape[0] == 3


def test_serve_takes_the_token_from_a_file_or_the_environment_and_warns_about_the_command_line(two_versions,
                                                                                               tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(app))
    (tmp_path / "token").write_text(f"{TOKEN}\n")
    from_file = CliRunner().invoke(main, ["serve", str(two_versions), "--device", "cpu", "--token-file",
                                          str(tmp_path / "token")])
    from_env = CliRunner().invoke(main, ["serve", str(two_versions), "--device", "cpu"], env={"GENMEM_TOKEN": TOKEN})
    on_line = CliRunner().invoke(main, ["serve", str(two_versions), "--device", "cpu", "--token", TOKEN])
    assert "visible to every user" in on_line.output
    assert "visible" not in from_file.output + from_env.output and "serving" in from_file.output
    for app in started:
        with TestClient(app) as client:
            assert client.get("/genmem/info").status_code == 401
            assert client.get("/genmem/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert len(started) == 3
