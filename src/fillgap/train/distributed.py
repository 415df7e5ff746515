"""The distributed pieces of training: process environment, CPU synchronised BatchNorm,
and the torchrun launcher behind ``fillgap train --nproc N`` (see ``fillgap.train``)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from ..errors import FillgapError


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, for CPU (gloo) runs.

    ``torch.nn.SyncBatchNorm`` refuses CPU tensors (torch 2.13: "expected input tensor to be on
    GPU"), so this one sums (x, x^2, count) over the ranks with the differentiable all-reduce
    of torch's functional collectives; its backward all-reduces the gradients of those sums, which is
    what makes the gradients equal to single-process BatchNorm on the whole batch. Outside
    training, or in a single process, it is plain BatchNorm; its state dict is BatchNorm's.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed._functional_collectives import all_reduce  # differentiable (sum)

        c, dims = x.shape[1], [0, *range(2, x.dim())]
        xf = x.float()
        # Sums in float64: var = E[x^2] - E[x]^2 cancels badly in float32 when |mean| >> std.
        count = torch.tensor([x.numel() // c], dtype=torch.float64, device=x.device)
        sums = [xf.sum(dims, dtype=torch.float64), (xf * xf).sum(dims, dtype=torch.float64), count]
        stats = all_reduce(torch.cat(sums), "sum", dist.group.WORLD)
        n = stats[-1]
        mean64 = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean64 * mean64).clamp_min(0).float()
        mean = mean64.float()
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), f)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), f)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer of ``module`` as a CPUSyncBatchNorm sharing its parameters and buffers."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_cpu_sync_batchnorm(child))
    return module


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def launch(argv: list[str], nproc: int) -> None:
    """Run ``fillgap <argv>`` as ``nproc`` torchrun processes on this machine and wait for them.

    torch.distributed.run is called in this process (not as a command) so that a failed rank
    becomes one FillgapError line here instead of torchrun's traceback; the rank's own error
    line is printed above it.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # Split the cores between the ranks (torchrun alone would set 1 thread each, with a warning).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "fillgap", *argv])
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise FillgapError(
            f"training with {nproc} processes failed: rank {rank} exited with code "
            f"{failure.exitcode} (its message is above)"
        ) from None
