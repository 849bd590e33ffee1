"""The replay service in process: sample replies, limits, pinned versions, and new versions picked up safely."""

import pytest
import torch
from safetensors.torch import load as load_safetensors

from genmem.errors import InvalidRequest, MemoryNotFound, ServiceUnavailable, TooManySamples, UnknownClass
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
