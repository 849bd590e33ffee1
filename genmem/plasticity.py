"""Task masks and the rules that train them (docs/ALGORITHM.md §3 to §8).

While a task is learned, every masked layer carries a real-valued embedding e
and uses the soft mask sigmoid(s * e). The scale s is annealed from almost 0
(the mask is a gentle 0.5 everywhere) to s_max (the mask is practically
binary), so the network can first explore which weights or units to use and
then commit to them. At the end of the task the mask is binarised and the
weights it selected become reserved: later tasks may read them but never
change them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genmem.nets import DCGAN, Wire

COSH_CLAMP = 50.0  # keeps cosh(s * e) finite in float32


def epoch_scale(epoch: int, epochs: int, s_max: float) -> float:
    """Largest s of epoch `epoch` (0-based) of `epochs`: rises linearly to s_max in the last epoch.

    Uses (epoch + 1) / epochs, so that s never runs downwards in the first epoch.
    """
    return (s_max - 1 / s_max) * (epoch + 1) / epochs + 1 / s_max


def batch_scale(epoch_top: float, offset: int, num_images: int) -> float:
    """s for the batch that starts at image `offset` of `num_images` (DGMw's local annealing).

    Within every epoch s sweeps from 1/top to top, so the mask is re-opened a
    little at the start of each epoch and hardens towards its end.
    """
    return (epoch_top - 1 / epoch_top) * offset / num_images + 1 / epoch_top


def soft_mask(embedding: torch.Tensor, s: float) -> torch.Tensor:
    return torch.sigmoid(s * embedding)


def compensate_embedding_gradient_(embedding: torch.Tensor, s: float, epoch_top: float) -> None:
    """Rescale the embedding's gradient in place so it does not vanish or explode as s changes.

    d sigmoid(s e)/de shrinks like s / cosh(s e); multiplying by
    (top / s) * (cosh(s e) + 1) / (cosh(e) + 1) makes the update of e
    independent of where s is in its schedule.
    """
    if embedding.grad is None:
        return
    with torch.no_grad():
        num = torch.cosh(torch.clamp(s * embedding, -COSH_CLAMP, COSH_CLAMP)) + 1
        den = torch.cosh(embedding) + 1
        embedding.grad.mul_((epoch_top / s) * num / den)


def binarise(embedding: torch.Tensor) -> torch.Tensor:
    """The task's final binary mask: entries whose soft mask ended strictly above 0.5.

    An entry whose embedding never left 0 (mask exactly 0.5, no gradient ever
    reached it) is not reserved: it was never chosen, and reserving it would
    waste capacity.
    """
    return embedding.detach() > 0


def sparsity_penalty(masks: Sequence[torch.Tensor], reserved: Sequence[torch.Tensor]) -> torch.Tensor:
    """Fraction of the still-free capacity that the current soft masks claim, pooled over layers.

    R = sum m (1 - m_<t) / sum (1 - m_<t). Reusing reserved entries is free, so
    the task is pushed to reuse what earlier tasks left and to claim little new.
    """
    claimed = sum((m * (~r)).sum() for m, r in zip(masks, reserved, strict=True))
    free = sum((~r).sum() for r in reserved)
    return claimed / max(int(free), 1)


def frozen_weights(variant: str, reserved_in: torch.Tensor | None, reserved_out: torch.Tensor) -> torch.Tensor:
    """Which entries of a [in, out, k, k] weight earlier tasks depend on, broadcastable to it.

    DGMw: the reserved weights themselves. DGMa: a weight is frozen when both of
    the units it connects are reserved (1 - min(a_out, a_in)); a layer that
    reads the noise, which every task reads, counts its outputs only.
    """
    if variant == "dgmw":
        return reserved_out
    out_side = reserved_out.view(1, -1, 1, 1)
    if reserved_in is None:
        return out_side
    return reserved_in.view(-1, 1, 1, 1) & out_side


def frozen_per_layer(variant: str, reserved: Sequence[torch.Tensor], wires: Sequence[Wire] | None = None
                     ) -> list[torch.Tensor]:
    """`frozen_weights` for every masked layer, given the reserved masks (Generator.reserved()): per layer for
    DGMw, per unit group for DGMa, where each layer reads the groups of its wire (Generator.wires; None: a chain
    of one layer per group, the DCGAN)."""
    if variant == "dgmw":
        return [frozen_weights(variant, None, here) for here in reserved]
    wires = wires or DCGAN().wires(len(reserved))
    return [frozen_weights(variant, None if wire.source is None else reserved[wire.source], reserved[wire.group])
            for wire in wires]
