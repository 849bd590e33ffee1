"""The replay service in process: sample replies, limits, pinned versions, and new versions picked up safely."""

import io
import json
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

from genmem.admission import Admission
from genmem.errors import (CorruptMemory, InvalidRequest, MemoryNotFound, ServerBusy, ServiceUnavailable,
                           TooManySamples, UnknownClass)
from genmem.memory import Memory
from genmem.service import ReplayService, label_runs, requested_counts

from tiny import publish


@pytest.fixture
def first_version_only(two_versions, tmp_path):
    """A memory holding a copy of v0001 alone; `publish` then makes v0002 appear in it."""
    publish(two_versions / "versions" / "v0001", tmp_path / "m", "v0001")
    return Memory(tmp_path / "m")


def test_the_latest_version_is_served_with_headers_that_say_what_the_bytes_hold(two_versions):
    service = ReplayService(two_versions)
    assert service.version == "v0002"
    reply = service.sample({"2": 3, "0": 2}, seed=4)
    tensors = load_safetensors(reply.body)
    assert tensors["images"].shape == (5, 1, 16, 16) and tensors["images"].dtype == torch.uint8
    assert tensors["labels"].tolist() == [2, 2, 2, 0, 0] and reply.count == 5
    assert reply.headers["X-Genmem-Version"] == "v0002"
    assert reply.headers["X-Genmem-Image-Shape"] == "1,16,16"
    assert reply.headers["X-Genmem-Labels"] == "2:3,0:2"
    assert reply.headers["Server-Timing"].startswith("sample;dur=")
    local, _ = service.sampler().sample({"2": 3, "0": 2}, seed=4)
    assert torch.equal(tensors["images"], local)


def test_a_total_is_spread_evenly_over_the_chosen_classes(two_versions):
    service = ReplayService(two_versions)
    classes = service.sampler().classes
    assert requested_counts(classes, None, None, 7) == {0: 3, 1: 2, 2: 2}
    assert requested_counts(classes, None, ["2", 1], 5) == {2: 3, 1: 2}
    reply = service.sample(classes=["2", 1], total=5, fmt="npy")
    assert reply.headers["X-Genmem-Labels"] == "2:3,1:2"
    with pytest.raises(InvalidRequest, match="not both"):
        requested_counts(classes, {0: 1}, None, 5)
    with pytest.raises(InvalidRequest, match="say how many images"):
        requested_counts(classes, None, ["0"], None)
    with pytest.raises(UnknownClass, match="no class '7'; it holds 0, 1, 2"):
        requested_counts(classes, None, ["7"], 5)


def test_label_runs():
    assert label_runs(torch.tensor([3, 3, 5, 5, 5, 3])) == "3:2,5:3,3:1"
    assert label_runs(torch.tensor([], dtype=torch.long)) == ""


def test_requests_over_the_limit_are_refused_before_sampling(two_versions):
    service = ReplayService(two_versions, max_samples=10)
    assert service.sample(total=10).count == 10
    with pytest.raises(TooManySamples, match="asks for 11 images but this server allows at most 10 per request"):
        service.sample({0: 6, 1: 5})
    with pytest.raises(TooManySamples, match="a PNG grid allows at most 4,096"):
        ReplayService(two_versions).sample(total=5000, fmt="png")


def test_bad_formats_versions_and_classes_are_explained(two_versions):
    service = ReplayService(two_versions)
    with pytest.raises(InvalidRequest, match="unknown format 'jpg'"):
        service.sample(total=1, fmt="jpg")
    with pytest.raises(InvalidRequest, match="unknown dtype 'int8'"):
        service.sample(total=1, dtype="int8")
    with pytest.raises(MemoryNotFound, match="no version 'v0009'; it has v0001, v0002"):
        service.sample(total=1, version="v0009")
    with pytest.raises(UnknownClass, match="no class '5'"):
        service.sample({"5": 1})


def test_older_versions_are_pinned_on_demand_and_cached(two_versions):
    service = ReplayService(two_versions, cache_size=1)
    old = service.sampler("v0001")
    assert old.version == "v0001" and service.sampler("1") is old, "cached, under either spelling"
    assert service.sampler("v0002") is service.sampler(), "the served version is not loaded twice"
    reply = service.sample(total=4, version="v0001")
    assert reply.headers["X-Genmem-Version"] == "v0001" and reply.headers["X-Genmem-Labels"] == "0:2,1:2"
    with pytest.raises(UnknownClass, match="no class '2'; it holds 0, 1"):
        service.sample({"2": 1}, version="v0001")


def test_a_new_version_is_swapped_in_whole_while_old_requests_finish_on_the_old(two_versions, first_version_only):
    service = ReplayService(first_version_only.path)
    in_flight = service.sampler()
    publish(two_versions / "versions" / "v0002", first_version_only.path, "v0002")
    assert service.version == "v0001", "nothing changes until refresh"
    assert service.refresh() == "v0002" and service.version == "v0002"
    assert service.sampler().classes.find(2) is not None
    assert in_flight.version == "v0001" and in_flight.sample({1: 2})[0].shape == (2, 1, 16, 16)
    assert service.refresh() == "v0002", "a refresh without a new version keeps the loaded one"


def test_a_damaged_new_version_is_skipped_and_the_old_one_stays_served(two_versions, first_version_only):
    service = ReplayService(first_version_only.path)
    publish(two_versions / "versions" / "v0002", first_version_only.path, "v0002", damaged=True)
    assert service.refresh() == "v0001"
    assert service.last_error.startswith("version v0002 could not be loaded")
    assert "generator.safetensors fails its sha256" in service.last_error
    assert service.sample(total=3).headers["X-Genmem-Version"] == "v0001"


def test_a_service_without_a_version_is_not_ready_until_one_appears(two_versions, tmp_path):
    service = ReplayService(tmp_path / "m")
    assert service.version is None
    with pytest.raises(ServiceUnavailable, match="no version is loaded: memory .* has no finished version yet"):
        service.sample(total=1)
    publish(two_versions / "versions" / "v0001", tmp_path / "m", "v0001")
    assert service.refresh() == "v0001"
    assert service.sample(total=2).count == 2


def flip_a_byte(path) -> bytes:
    """Damage a file in place; returns its original bytes."""
    original = path.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return original


def test_a_damaged_newest_version_at_start_falls_back_to_the_newest_intact_one(two_versions, tmp_path):
    memory = Memory(shutil.copytree(two_versions, tmp_path / "m"))
    masks = memory.path / "versions" / "v0002" / "masks.safetensors"
    original = flip_a_byte(masks)
    service = ReplayService(memory.path)
    assert service.version == "v0001" and service.available() == ["v0001"]
    assert "masks.safetensors fails its sha256" in service.damaged["v0002"].reason
    assert service.describe().startswith("v0001 (version v0002 could not be loaded: ")
    assert str(memory.path) not in service.describe(), "reasons call the memory by its name"

    loads = []
    real = service.memory.load
    service.memory.load = lambda *args: loads.append(args) or real(*args)
    assert service.refresh() == "v0001" and loads == [], "an unchanged damaged version is not read again"
    masks.write_bytes(original)  # repaired: its files changed, so it is tried again
    assert service.refresh() == "v0002" and len(loads) == 1 and service.damaged == {}
    assert service.available() == ["v0001", "v0002"]


def test_a_damaged_pinned_version_is_named_and_left_out(two_versions, tmp_path):
    memory = Memory(shutil.copytree(two_versions, tmp_path / "m"))
    flip_a_byte(memory.path / "versions" / "v0001" / "generator.safetensors")
    service = ReplayService(memory.path)
    with pytest.raises(CorruptMemory, match="version v0001 could not be loaded: m/versions/v0001/generator.*"
                                            r"ask for an intact version \(v0002\)"):
        service.sample(total=1, version="v0001")
    assert service.available() == ["v0002"] and service.version == "v0002"

    loads = []
    real = service.memory.load
    service.memory.load = lambda *args: loads.append(args) or real(*args)
    for _ in range(3):  # a client asking again and again costs a directory listing, not a read of every file
        with pytest.raises(CorruptMemory, match="could not be loaded"):
            service.sample(total=1, version="v0001")
    assert loads == []


def test_replies_name_the_memory_never_its_path(two_versions):
    service = ReplayService(two_versions, name="digits")
    body = service.sample(total=2).body
    header = json.loads(body[8: 8 + int.from_bytes(body[:8], "little")])
    assert header["__metadata__"]["memory"] == "digits" and str(two_versions).encode() not in body
    assert service.public(f"{two_versions}/versions/v0001 is damaged") == "digits/versions/v0001 is damaged"


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_streamed_parts_are_the_files_the_libraries_write(two_versions, dtype):
    service = ReplayService(two_versions)
    reply = service.sample({"2": 3, "0": 0, "1": 2}, seed=1, dtype=dtype)
    images, labels = service.sampler().sample({"2": 3, "1": 2}, seed=1, as_uint8=dtype == "uint8")
    decoded = load_safetensors(reply.body)
    assert torch.equal(decoded["images"], images) and torch.equal(decoded["labels"], labels)
    assert decoded["images"].dtype == images.dtype
    npy = np.load(io.BytesIO(service.sample({"2": 3, "1": 2}, seed=1, fmt="npy", dtype=dtype).body))
    assert np.array_equal(npy, images.numpy()) and npy.dtype == images.numpy().dtype
    empty = load_safetensors(service.sample(total=0).body)
    assert empty["images"].shape == (0, 1, 16, 16) and empty["labels"].shape == (0,)


def test_work_in_flight_is_bounded_waits_then_is_refused_with_retry_after():
    admission = Admission(budget_bytes=100, wait_seconds=0.2)
    first = admission.claim(60)
    start = time.monotonic()
    with pytest.raises(ServerBusy, match="busy .* send the request again in 1 s"):
        admission.claim(60)
    assert time.monotonic() - start >= 0.2, "it waited for room first"
    with pytest.raises(TooManySamples, match="holds at most 0.0 MiB in flight"):
        admission.claim(101)
    admission.wait_seconds = 600  # room frees up while it waits, however late a loaded machine runs the timer
    threading.Timer(0.05, first.release).start()
    second = admission.claim(60)
    assert first.released
    second.release()
    second.release()  # idempotent: the bytes are handed back once
    assert admission.in_flight == 0


def test_the_service_claims_a_reply_until_it_is_released(two_versions):
    service = ReplayService(two_versions, budget_mib=1, wait_seconds=0.05)
    held = service.sample(total=4, keep_claim=True)
    assert service.admission.in_flight == 4 * (16 * 16 + 8)
    assert service.sample(total=4).count == 4 and service.admission.in_flight == 4 * (16 * 16 + 8)
    held.claim.release()
    assert service.admission.in_flight == 0
    with pytest.raises(TooManySamples, match="would send 4.0 MiB"):
        service.sample(total=4096, dtype="float32")
