"""Differentiable augmentation for the critic (DiffAugment; Zhao et al. 2020, data-efficient GAN training).

With 400 to 1000 images per class the critic soon memorises the real ones
and stops teaching the generator. Showing it randomly translated, cut-out
and recoloured images instead, real and generated alike and through
differentiable operations (so the generator's gradient passes through),
regularises it without teaching the generator the augmentations: the critic
never sees an unaugmented image, so it has no reason to prefer them.

Images are in [-1, 1]. Translation and cutout fill with -1, the black
background of digit-like data, so that they move and erase strokes rather
than paint grey blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genmem.errors import InvalidSetting

TRANSLATION = 1 / 8  # largest shift, as a share of the image side
CUTOUT = 1 / 2  # side of the erased square, as a share of the image side
FILL = -1.0


def brightness(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return x + (torch.rand(len(x), 1, 1, 1, generator=rng, device=x.device) - 0.5)


def saturation(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * (torch.rand(len(x), 1, 1, 1, generator=rng, device=x.device) * 2) + grey


def contrast(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(len(x), 1, 1, 1, generator=rng, device=x.device) + 0.5) + mean


def colour(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random brightness, saturation (a no-op on grey images) and contrast, per image."""
    return contrast(saturation(brightness(x, rng), rng), rng)


def translation(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Shift every image by up to TRANSLATION of its side in each direction, whole pixels, filling with FILL."""
    n, _, h, w = x.shape
    limit_y, limit_x = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    dy = torch.randint(-limit_y, limit_y + 1, (n, 1, 1), generator=rng, device=x.device)
    dx = torch.randint(-limit_x, limit_x + 1, (n, 1, 1), generator=rng, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy + limit_y  # source row in the padded image
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx + limit_x
    padded = F.pad(x, (limit_x, limit_x, limit_y, limit_y), value=FILL)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Erase one square of side CUTOUT per image at a random place (it may hang over the border)."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    top = torch.randint(0, h + 1 - size_y % 2, (n, 1, 1), generator=rng, device=x.device) - size_y // 2
    left = torch.randint(0, w + 1 - size_x % 2, (n, 1, 1), generator=rng, device=x.device) - size_x // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    erased = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return torch.where(erased[:, None], torch.full_like(x, FILL), x)


OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "colour": colour, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' means no augmentation."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in OPERATIONS]
    if unknown:
        raise InvalidSetting(f"unknown augmentation {', '.join(map(repr, unknown))}: choose from "
                             f"{', '.join(OPERATIONS)} (comma-separated), or '' for none")
    return names


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator) -> torch.Tensor:
    """Apply the policy's operations in order, each with fresh randomness per image."""
    for name in policy:
        x = OPERATIONS[name](x, rng)
    return x
