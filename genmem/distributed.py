"""Data-parallel learning of one task over several processes (torchrun; NCCL on GPUs, gloo on CPUs).

Every rank holds the same generator, critic, optimisers and random stream
(same seed), and the whole task's images. Every random draw of a step (the
epoch's permutation, noise, augmentation, gradient-penalty mixing, replay
picks) is made for the global batch on every rank alike, so the ranks never
drift apart and a run is the single-process run up to float rounding. Only
the networks' forward and backward passes are split: while a task trains,
the generator and the critic (and, in the solver phase after the GAN, the
solver) compute their outputs for this rank's rows of the batch (a
contiguous slice) and gather everyone's rows back, and their BatchNorms
normalise with the statistics of the global batch.

Why explicit collectives rather than DistributedDataParallel: DDP averages
the gradients of per-rank losses, which equals the single-process gradient
only for losses that are means over samples and networks without BatchNorm
(each rank would normalise with its own rows' statistics). Here
the losses are not all such means (the solver's class-balanced
cross-entropy, the gradient penalty, which differentiates the critic with
respect to its input), the masked generator's parameters change every task
and several of them are used outside any module's forward (the mask
embeddings), and the plasticity rules must act on the averaged gradient.
Gathering outputs keeps every loss exactly the global batch's loss on every
rank, and one all_reduce per optimiser step then averages the gradients
before embedding compensation and the zeroing of reserved weights' gradients,
which every rank applies alike.

The gradient convention is DDP's: gathering a rank's rows scales their
gradient by the number of ranks, so that averaging the ranks' gradients
gives the global batch's gradient, and terms that every rank computes in
full (the sparsity regulariser) average to themselves. Scattering rows
divides by the same factor, so a gradient with respect to a network's input
(the gradient penalty's) is the true one on every rank.

The global batch size is what the user sets; each rank computes about
batch/N rows of it. Because the gradient is the global batch's, the
learning rate does not change with N.

Writing the version (rank 0 alone; the others wait for its verdict) and
ending a rank: genmem.rank_writer.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from genmem import errors
from genmem.errors import GenmemError

TIMEOUT = datetime.timedelta(minutes=10)  # a rank waiting for a dead or stuck peer gives up after this


class DataParallel:
    """This process's place in an initialised process group, and the collectives a training step needs."""

    def __init__(self, device: torch.device):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device

    # Splitting a batch into rows per rank.

    def rows(self, total: int) -> tuple[int, int]:
        """This rank's [start, stop) of a batch of `total` rows: contiguous, sizes differing by at most one."""
        return _rows_of(self.rank, self.world_size, total)

    def shard_batches(self, generator: nn.Module, critic: nn.Module) -> Callable[[], None]:
        """Make the generator (batch arguments: its noise and class indices) and the critic (its images) compute
        this rank's rows and gather all rows; returns the undo."""
        undo = [self.shard(generator, (0, 2)), self.shard(critic)]

        def restore() -> None:
            for each in undo:
                each()

        return restore

    def shard(self, module: nn.Module, batch_args: tuple[int, ...] = (0,)) -> Callable[[], None]:
        """Make `module` compute this rank's rows of its batch arguments (by position) and gather every rank's
        outputs; returns the undo. Its BatchNorms in training mode use the global batch's statistics, as one
        process would."""
        patched = [_split_forward(module, batch_args, self)]
        patched += [_sync_norm(norm, self) for norm in module.modules() if isinstance(norm, nn.BatchNorm2d)]

        def restore() -> None:
            for patched_module in patched:
                del patched_module.forward

        return restore

    def average_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        """Average the gradients over the ranks in place, in one all_reduce (None stays None on every rank)."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    # Agreeing on outcomes.

    def rank0_decides(self, flag: bool) -> bool:
        """Rank 0's flag on every rank (when each rank's own could differ: a clock, say)."""
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def share_outcome(self, failure: BaseException | None) -> None:
        """Rank 0's failure (or None) reaches every rank; the others raise it as their own."""
        text = self._broadcast_text(None if failure is None else f"{type(failure).__name__}\n{failure}")
        if self.rank != 0 and text is not None:
            name, message = text.split("\n", 1)
            error = getattr(errors, name, None)
            raise (error if isinstance(error, type) and issubclass(error, GenmemError) else GenmemError)(
                f"rank 0 failed: {message}")

    def all_equal(self, digest: bytes) -> bool:
        """Whether every rank passed the same digest (of a fixed length)."""
        mine = torch.frombuffer(bytearray(digest), dtype=torch.uint8).to(self.device)
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(everyone, mine)
        return all(torch.equal(other, mine) for other in everyone)

    def _broadcast_text(self, text: str | None) -> str | None:
        """Rank 0's text (or None) on every rank, sent as bytes (no pickle between ranks)."""
        data = b"" if text is None else text.encode()
        length = torch.tensor([len(data) if text is not None else -1], device=self.device)
        dist.broadcast(length, src=0)
        if int(length) < 0:
            return None
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device) if self.rank == 0 \
            else torch.empty(int(length), dtype=torch.uint8, device=self.device)
        dist.broadcast(payload, src=0)
        return payload.cpu().numpy().tobytes().decode()


class SingleProcess:
    """The null DataParallel of an ordinary run: nothing is split and nothing averaged."""

    rank = 0
    world_size = 1

    def shard_batches(self, generator: nn.Module, critic: nn.Module) -> Callable[[], None]:
        return lambda: None

    def shard(self, module: nn.Module, batch_args: tuple[int, ...] = (0,)) -> Callable[[], None]:
        return lambda: None

    def average_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        pass

    def rank0_decides(self, flag: bool) -> bool:
        return flag

    def all_equal(self, digest: bytes) -> bool:
        return True


ONE_PROCESS = SingleProcess()


def from_environment(device: torch.device) -> DataParallel | None:
    """Join the process group that torchrun describes in the environment; None when not launched by it.

    A CUDA device becomes this process's GPU (cuda:LOCAL_RANK) with NCCL;
    otherwise the ranks talk over gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise GenmemError(f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun "
                          f"(torchrun --nproc-per-node N $(which genmem) learn-task ...)")
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise GenmemError(f"local rank {local_rank} has no GPU (this machine has {torch.cuda.device_count()}); "
                              f"start at most that many processes per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    return DataParallel(device)


# Autograd pieces: rows out of a global batch and back, and a sum over ranks.

class _Rows(torch.autograd.Function):
    """This rank's rows of a batch every rank holds; the backward gathers every rank's gradient rows."""

    @staticmethod
    def forward(ctx, x, parallel):
        ctx.parallel, ctx.total = parallel, len(x)
        start, stop = parallel.rows(len(x))
        return x[start:stop].clone()

    @staticmethod
    def backward(ctx, grad):
        return _GatherRows.apply(grad, ctx.parallel, ctx.total) / ctx.parallel.world_size, None


class _GatherRows(torch.autograd.Function):
    """Every rank's rows, concatenated; the backward keeps this rank's rows of the gradient."""

    @staticmethod
    def forward(ctx, x, parallel, total):
        ctx.parallel = parallel
        sizes = [stop - start for start, stop in (_rows_of(r, parallel.world_size, total)
                                                   for r in range(parallel.world_size))]
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: len(x)] = x
        pieces = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(pieces, padded.contiguous())
        return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])

    @staticmethod
    def backward(ctx, grad):
        return _Rows.apply(grad, ctx.parallel) * ctx.parallel.world_size, None, None


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) as a differentiable function: the gradient of a sum every rank uses is summed too."""

    @staticmethod
    def forward(ctx, x):
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        return _SumOverRanks.apply(grad)


def _rows_of(rank: int, world_size: int, total: int) -> tuple[int, int]:
    base, extra = divmod(total, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def _split_forward(module: nn.Module, batch_args: tuple[int, ...], parallel: DataParallel) -> nn.Module:
    """Patch `module` (this instance only) to compute the rows of its batch arguments and gather its outputs."""
    original = module.forward

    def forward(*args, **kwargs):
        total = len(args[batch_args[0]])
        args = [_Rows.apply(a, parallel) if i in batch_args else a for i, a in enumerate(args)]
        out = original(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(_GatherRows.apply(o, parallel, total) for o in out)
        return _GatherRows.apply(out, parallel, total)

    module.forward = forward
    return module


def _sync_norm(norm: nn.BatchNorm2d, parallel: DataParallel) -> nn.Module:
    """Patch a BatchNorm (this instance only) to normalise with the global batch's statistics while training."""
    original = norm.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not norm.training:
            return original(x)
        dims = (0, 2, 3)
        x64 = x.double()  # E[x^2] - E[x]^2 in float64: no cancellation worth the name at these magnitudes
        count = x.new_full((1,), x.numel() // x.shape[1], dtype=torch.float64)
        stats = _SumOverRanks.apply(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]))
        channels = x.shape[1]
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels: 2 * channels] / n - mean * mean).clamp_min(0)
        if norm.track_running_stats:
            _update_running_stats(norm, mean.detach(), var.detach() * n / (n - 1).clamp_min(1))
        scale = torch.rsqrt(var + norm.eps).to(x.dtype)
        shape = (1, channels, 1, 1)
        y = (x - mean.to(x.dtype).view(shape)) * scale.view(shape)
        return y * norm.weight.view(shape) + norm.bias.view(shape) if norm.affine else y

    norm.forward = forward
    return norm


@torch.no_grad()
def _update_running_stats(norm: nn.BatchNorm2d, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
    """What nn.BatchNorm2d does to its running statistics in a training forward."""
    norm.num_batches_tracked += 1
    factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    norm.running_mean.mul_(1 - factor).add_(factor * mean.to(norm.running_mean.dtype))
    norm.running_var.mul_(1 - factor).add_(factor * unbiased_var.to(norm.running_var.dtype))
