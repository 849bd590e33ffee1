"""Replay filtered by the solver's confidence keeps what the solver recognises, in draw order, deterministically."""

import pytest
import torch
from torch import nn

from genmem.errors import GenmemError
from genmem.filtering import ConfidentReplay
from genmem.memory import Memory


class BrightnessSolver(nn.Module):
    """Two outputs; the probability of output 0 rises with an image's mean brightness (a known, checkable rule)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, images):
        logit = self.scale * images.flatten(1).mean(1)
        return torch.stack([logit, -logit], 1)


def confidence(images):
    return BrightnessSolver()(images.float() / 127.5 - 1).softmax(1)[:, 0].detach()


def test_kept_images_pass_in_draw_order_and_doubted_ones_only_fill_the_rest(two_versions):
    sampler = Memory(two_versions).sampler("v0001")
    candidates, _ = sampler.sample({0: 24}, seed=3)  # what asking for 12 draws (twice as many)
    scores = confidence(candidates)
    threshold = float(scores.sort().values[12])  # 12 of the 24 pass
    replay = ConfidentReplay(sampler, BrightnessSolver(), [0, 1], threshold)
    images, labels = replay.sample({0: 12}, seed=3)
    passing = scores >= threshold
    assert 0 < int((~passing[:12]).sum()), "some early candidates are doubted, so order matters"
    assert torch.equal(images, candidates[passing]) and labels.tolist() == [0] * 12
    assert replay.kept[0] == (12, 24)
    assert torch.equal(replay.sample({0: 12}, seed=3)[0], images), "same seed, same batch"

    strict = ConfidentReplay(sampler, BrightnessSolver(), [0, 1], float(scores.sort().values[-3]))  # 3 pass
    images, _ = strict.sample({0: 12}, seed=3)
    top = scores >= strict.min_confidence
    assert torch.equal(images, torch.cat([candidates[top], candidates[~top][:9]])), \
        "too few pass: the doubted fill the rest, in draw order"


def test_filtering_needs_a_solver_that_knows_the_class(two_versions, tmp_path):
    sampler = Memory(two_versions).sampler("v0002")
    with pytest.raises(GenmemError, match="class 2 is not among the solver's classes"):
        ConfidentReplay(sampler, BrightnessSolver(), [0, 1], 0.5).sample({2: 4})
    with pytest.raises(GenmemError, match=r"probability in \[0, 1\)"):
        ConfidentReplay(sampler, BrightnessSolver(), [0, 1], 1.0)
    replay = ConfidentReplay.from_memory(Memory(two_versions), "v0002", 0.5)
    images, labels = replay.sample({0: 3, 1: 3, 2: 3}, seed=1)
    assert images.shape[0] == 9 and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
