"""The training loop: config -> data, masks, losses -> model; checkpoints, resume, logs, grids.

Outputs in ``cfg.out``: ``last.pt`` (every ``checkpoint_every`` steps and at the end),
``metrics.jsonl`` (one line per log step and per epoch), ``grid-epochNNN.png``
(input | mask | output | truth per sample), ``loss-curve.png`` and ``config.yaml``.
A run folder holds one run: training into it again needs ``resume`` (continue from
``last.pt``; log lines after that checkpoint are dropped, so none appears twice) or
``overwrite`` (start over). The folder is locked while a run writes to it, and temp files
of a killed run are removed when the next one starts.

Distributed data parallel: under ``torchrun --nproc-per-node N -m fillgap train ...`` (or
``fillgap train --nproc N``) each process trains on ``batch_size / N`` samples of every global
batch (``gloo`` on CPU, ``nccl`` on CUDA), gradients are averaged by DistributedDataParallel,
and only rank 0 writes checkpoints, logs and grids. The ranks take disjoint dataset indices
(``EpochSampler``) and every random draw of a sample (crop, flip, hole) comes from (seed, epoch,
global index), so masks differ across ranks and a run is reproducible whatever N is.
BatchNorm statistics are synchronised across ranks (``sync_bn``), so a step equals a
single-process step on the same global batch up to float rounding, as long as the losses
are plain means over the batch. The hole-weighted pixel losses (``hole_weight`` != 1), the FFT
loss's phase term, ``hole_l1`` and ``tv`` divide by a per-batch total, which with N ranks is
each rank's own total: the gradient is then the mean of N such ratios, slightly different
from the one ratio over the whole batch.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from ..checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig
from .curves import read_metrics, write_loss_curve
from ..data import InpaintDataset, make_source
from .distributed import convert_cpu_sync_batchnorm, dist_env
from ..errors import FillgapError
from ..fsutil import atomic_write_text, folder_lock, remove_stale_temps
from ..fill.tensors import to_uint8
from ..imageio import write_image
from .losses import (
    CompositeLoss,
    PatchDiscriminator,
    discriminator_adversarial,
    feature_matching,
    generator_adversarial,
)
from ..masks import MaskGenerator
from ..models import create_model


class EpochSampler(Sampler[int]):
    """A permutation per (seed, epoch), optionally starting part-way (resume mid-epoch), optionally
    one rank's share of it.

    ``start`` counts positions in the whole permutation (batches done x global batch size), so a
    run resumed with another number of processes picks up at the same sample. Rank r takes
    positions r, r + world, r + 2 world, ... of what is left: the ranks' k-th batches (each
    global batch / world long) together are exactly the single-process k-th batch. What is left
    is padded by wrapping round to a multiple of ``world`` (a few samples seen twice at the end
    of an epoch), so every rank takes the same number of steps: a rank that stopped early would
    leave the others waiting in all-reduce.
    """

    def __init__(self, length: int, seed: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world of {world}")
        self.length, self.seed, self.epoch, self.start = length, seed, 0, 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.length)[self.start :]
        if self.world > 1:
            order = np.resize(order, len(order) + (-len(order)) % self.world)[self.rank :: self.world]
        return iter(order.tolist())

    def __len__(self) -> int:
        return -(-max(0, self.length - self.start) // self.world)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FillgapError("device 'cuda' asked for, but no CUDA GPU is available")
    return torch.device(name)


def psnr(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> float:
    """PSNR in dB over the whole image, or over ``region`` (N x 1 x H x W) only."""
    err = (pred - target) ** 2
    if region is None:
        mse = err.mean()
    else:
        mse = (err * region).sum() / (region.sum() * pred.shape[1]).clamp_min(1.0)
    return float(10 * torch.log10(1.0 / mse.clamp_min(1e-10)))


def sample_grid(batch: dict, output: torch.Tensor, rows: int) -> np.ndarray:
    """uint8 picture: one row per sample, columns input | mask | output | truth."""

    def rgb(t):
        return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t

    n = min(rows, output.shape[0])
    cols = [rgb(batch["masked"][:n]), rgb(batch["mask"][:n]), rgb(output[:n].detach().cpu()), rgb(batch["image"][:n])]
    row_imgs = [torch.cat([c[i] for c in cols], dim=2) for i in range(n)]
    return to_uint8(torch.cat(row_imgs, dim=1))


RUN_FILES = ("last.pt", "metrics.jsonl", "loss-curve.png", "grid-epoch*.png")


class _progress(tqdm):
    """The bar of a run: in steps, or in seconds when a time budget (``max_minutes``) ends the run
    before its steps would (the demo: a minute, not thousands of steps and hours to go)."""

    def __init__(self, cfg: TrainConfig, total: int, step: int, enabled: bool):
        self.budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
        if self.budget is not None:
            super().__init__(
                total=round(self.budget),
                unit="s",
                desc="time budget",
                disable=not enabled,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{postfix}]",
            )
        else:
            super().__init__(total=total, initial=step, unit="step", disable=not enabled, dynamic_ncols=True)

    def advance(self, elapsed: float) -> None:
        if self.budget is None:
            self.update(1)
        else:
            self.update(min(elapsed, self.total) - self.n)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.out = Path(cfg.out)
        self.resumed, self.overwrite = resume, overwrite
        found = [n for n in ("last.pt", "metrics.jsonl") if (self.out / n).exists()]
        if found and not resume and not overwrite:
            raise FillgapError(
                f"{self.out} already holds a training run ({found[0]}): pass --resume to continue "
                "it or --overwrite to start over"
            )
        self.saved_step: int | None = None  # the step last.pt holds (None: nothing written yet)
        self.rank, self.world, local_rank = dist_env()
        self.distributed = self.world > 1
        self.is_main = self.rank == 0
        if cfg.batch_size % self.world:
            raise FillgapError(
                f"batch_size {cfg.batch_size} is not a multiple of the {self.world} processes "
                "(each one takes batch_size / processes samples of every batch)"
            )
        self.local_batch = cfg.batch_size // self.world
        self._own_group = False
        if self.distributed:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
                self._own_group = True
        # bf16 autocast: on by default on CUDA (tensor cores); off on CPU unless asked (slow there)
        self.bf16 = cfg.bf16 if cfg.bf16 is not None else self.device.type == "cuda"
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, **cfg.model_kwargs).to(self.device)
        if cfg.init and not resume:
            self._init_from(cfg.init)
        if self.distributed and cfg.sync_bn:
            if self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            else:
                self.model = convert_cpu_sync_batchnorm(self.model)
        size = self.model.fixed_size or cfg.size
        if self.model.fixed_size and cfg.size != self.model.fixed_size:
            raise FillgapError(
                f"model '{cfg.model}' works at {self.model.fixed_size}x{self.model.fixed_size} only: "
                f"set size: {self.model.fixed_size}"
            )
        if size % self.model.size_multiple:
            raise FillgapError(f"size {size} must be a multiple of {self.model.size_multiple} for '{cfg.model}'")
        self.train_set = InpaintDataset(
            make_source(cfg.data, "train"),
            size,
            MaskGenerator(cfg.masks, cfg.seed),
            seed=cfg.seed,
            samples_per_epoch=cfg.samples_per_epoch,
            scale=cfg.scale,
        )
        val_source = make_source(cfg.val_data or cfg.data, "val")
        self.val_set = InpaintDataset(
            val_source,
            size,
            MaskGenerator(cfg.masks, cfg.seed + 1),
            seed=cfg.seed + 1,
            samples_per_epoch=cfg.val_samples,
            scale=cfg.scale,
            augment=False,
            fixed=True,
        )
        if self.train_set[0]["image"].shape[0] != self.model.channels:
            raise FillgapError(
                f"model '{cfg.model}' takes {self.model.channels}-channel images, "
                f"data '{cfg.data}' gives {self.train_set[0]['image'].shape[0]}"
            )
        self.loss = CompositeLoss(cfg.losses, cfg.hole_weight)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.disc = self.disc_opt = None
        if cfg.adversarial:
            self.disc = PatchDiscriminator(self.model.channels).to(self.device)
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        self.step = self.epoch = 0
        self.batch_in_epoch = 0
        if resume:
            self._resume()
        # ``self.model`` stays the bare network (checkpoints, validation); ``self.net`` trains.
        self.net: nn.Module = self.model
        if self.distributed:
            # With synchronised BatchNorm the running statistics agree on every rank already.
            self.net = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=not cfg.sync_bn,
            )
            if self.disc is not None:  # trained with hand-reduced gradients (see _average_grads)
                for t in self.disc.state_dict().values():
                    dist.broadcast(t, 0)

    # -- state ---------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.cfg.batch_size)

    def total_steps(self) -> int:
        by_epochs = self.cfg.epochs * self.steps_per_epoch()
        return min(by_epochs, self.cfg.max_steps) if self.cfg.max_steps else by_epochs

    def _init_from(self, spec: str) -> None:
        """Fine-tuning: the weights of an earlier run or release, into this config's network (the
        settings may differ where they hold no weights, e.g. another prior)."""
        from ..methods import load_network

        source = load_network(None if spec == "default" else spec)
        if source.registry_name != self.cfg.model:
            raise FillgapError(
                f"init weights {spec} are model '{source.registry_name}', the config asks for '{self.cfg.model}'"
            )
        self.model.load_state_dict(source.state_dict())

    def _resume(self) -> None:
        path = self.out / "last.pt"
        ckpt = read_checkpoint(path)

        def entry(key: str, kind: type | tuple = object):
            if key not in ckpt:
                raise FillgapError(
                    f"checkpoint {path} has no '{key}' entry (cut short, or not written by "
                    "`fillgap train`): cannot resume from it"
                )
            if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
                raise FillgapError(f"checkpoint {path} is damaged: its '{key}' entry is a {type(ckpt[key]).__name__}")
            return ckpt[key]

        def load(what: str, module, state) -> None:
            try:
                module.load_state_dict(state)
            except Exception as exc:  # noqa: BLE001 - torch raises several kinds for a state that does not fit
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                raise FillgapError(f"checkpoint {path}: its '{what}' entry does not fit this run ({reason})") from None

        if ckpt["model_name"] != self.cfg.model:
            raise FillgapError(f"{path} holds model '{ckpt['model_name']}', the config asks for '{self.cfg.model}'")
        load("model", self.model, ckpt["model"])
        load("optimizer", self.opt, entry("optimizer", dict))
        if self.disc is not None and "disc" in ckpt:
            load("disc", self.disc, ckpt["disc"])
            load("disc_optimizer", self.disc_opt, entry("disc_optimizer", dict))
        self.step, self.epoch, self.batch_in_epoch = (
            entry("step", int),
            entry("epoch", int),
            entry("batch_in_epoch", int),
        )
        if ckpt.get("batch_size", self.cfg.batch_size) != self.cfg.batch_size:
            raise FillgapError(
                f"{path} was trained with batch_size {ckpt['batch_size']}, the config says "
                f"{self.cfg.batch_size}: resume with the same (global) batch size"
            )
        try:
            torch.set_rng_state(entry("torch_rng", torch.Tensor))
        except (RuntimeError, TypeError) as exc:
            raise FillgapError(
                f"checkpoint {path} is damaged: its 'torch_rng' entry is not a random generator state ({str(exc)[:80]})"
            ) from None
        self.saved_step = self.step

    def save(self, name: str = "last.pt") -> None:
        if not self.is_main:
            return
        # A checkpoint with NaN or infinite weights would replace the last usable one.
        bad = next(
            (k for k, v in self.model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()),
            None,
        )
        if bad is not None:
            raise FillgapError(
                f"weights became NaN or infinite by step {self.step} (e.g. {bad}): training stopped; {self._kept()}"
            )
        extra = {}
        if self.disc is not None:
            extra = {"disc": self.disc.state_dict(), "disc_optimizer": self.disc_opt.state_dict()}
        save_checkpoint(
            self.out / name,
            self.model,
            optimizer=self.opt.state_dict(),
            step=self.step,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            config=self.cfg.model_dump(),
            batch_size=self.cfg.batch_size,
            world_size=self.world,
            rank=self.rank,
            torch_rng=torch.get_rng_state(),
            **extra,
        )
        self.saved_step = self.step

    def _kept(self) -> str:
        """What last.pt holds now, for the message of a run that has to stop."""
        if self.saved_step is None:
            return f"no checkpoint was written (nothing saved in {self.out})"
        return f"{self.out / 'last.pt'} holds the weights of step {self.saved_step}, before the problem"

    def log(self, record: dict) -> None:
        if self.is_main:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if cfg.lr_final is None:
            return cfg.lr
        t = min(1.0, step / max(1, self.total_steps()))
        return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * t))

    # -- steps ---------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def _mean_over_ranks(self, parts: dict) -> dict:
        """The batch-mean of each logged value: every rank's value averaged (one small all-reduce)."""
        if not self.distributed:
            return parts
        keys = sorted(parts)
        t = torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def _average_grads(self, module: nn.Module) -> None:
        """DDP's gradient averaging done by hand, for the discriminator: its R1 penalty takes a
        double backward, which DistributedDataParallel does not support."""
        if not self.distributed:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def train_step(self, batch: dict) -> dict:
        image, mask = batch["image"].to(self.device), batch["mask"].to(self.device)
        hole = (mask > 0).float()
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.net.train()
        with self._autocast():
            pred = self.net(image, mask)
        pred = pred.float()  # losses in float32
        loss, parts = self.loss(pred, image, hole)
        use_adv = self.disc is not None and self.step >= self.cfg.adversarial_start
        if use_adv:
            filled = pred * hole + image * (1 - hole)
            adv = generator_adversarial(self.disc, filled, hole)
            loss = loss + self.cfg.adversarial * adv
            parts["adv_g"] = float(adv.detach())
            if self.cfg.feature_matching:
                fm = feature_matching(self.disc, image, filled, hole)
                loss = loss + self.cfg.feature_matching * fm
                parts["feat_match"] = float(fm.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        parts["loss"] = float(loss.detach())
        # Checked after backward (no update is applied yet) so that every rank sees the same
        # global value and all of them stop together.
        parts = self._mean_over_ranks(parts)
        if not math.isfinite(parts["loss"]):
            raise FillgapError(f"loss became {parts['loss']} at step {self.step}: training stopped; {self._kept()}")
        self.opt.step()
        if use_adv:
            d_loss = discriminator_adversarial(self.disc, image, pred * hole + image * (1 - hole), hole, self.cfg.r1)
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self._average_grads(self.disc)
            self.disc_opt.step()
            parts.update(self._mean_over_ranks({"adv_d": float(d_loss.detach())}))
        return parts

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        loader = DataLoader(self.val_set, batch_size=self.cfg.batch_size)
        preds, batches = [], []
        for batch in loader:
            pred = self.model(batch["image"].to(self.device), batch["mask"].to(self.device)).cpu()
            hole = (batch["mask"] > 0).float()
            preds.append(pred * hole + batch["image"] * (1 - hole))  # composited, as fill returns it
            batches.append(batch)
        pred = torch.cat(preds)
        full = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        hole = (full["mask"] > 0).float()
        self.last_val = (full, pred)
        return {"val_psnr": psnr(pred, full["image"]), "val_psnr_hole": psnr(pred, full["image"], hole)}

    def write_grid(self) -> Path | None:
        if not self.is_main:
            return None
        full, pred = self.last_val
        path = self.out / f"grid-epoch{self.epoch:03d}.png"
        write_image(path, sample_grid(full, pred, self.cfg.grid_samples), overwrite=True)
        return path

    # -- loop ----------------------------------------------------------------------------
    def make_loader(self, sampler: Sampler) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.local_batch,
            sampler=sampler,
            num_workers=self.cfg.workers,
            drop_last=False,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )

    def _prepare_folder(self) -> None:
        """Rank 0, holding the folder's lock: clear what a killed or replaced run left behind."""
        remove_stale_temps(self.out, recursive=False)
        if self.overwrite and not self.resumed:
            for pattern in RUN_FILES:
                for p in self.out.glob(pattern):
                    p.unlink(missing_ok=True)
        elif self.resumed:
            # Lines logged after the checkpoint would be logged again from it: keep the others only.
            path = self.out / "metrics.jsonl"
            records = read_metrics(path)
            kept = [r for r in records if isinstance(r.get("step"), int) and r["step"] <= self.step]
            if path.exists() and (len(kept) != len(records) or path.read_text().count("\n") != len(records)):
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        atomic_write_text(self.out / "config.yaml", yaml.safe_dump(self.cfg.model_dump(), sort_keys=False))

    def fit(self) -> dict:
        if not self.is_main:
            return self._fit()
        with folder_lock(self.out, "fillgap training run"):
            self._prepare_folder()
            return self._fit()

    def _fit(self) -> dict:
        cfg = self.cfg
        sampler = EpochSampler(len(self.train_set), cfg.seed, self.rank, self.world)
        total = self.total_steps()
        started = time.time()
        summary: dict = {}
        bar = _progress(cfg, total, self.step, cfg.progress and self.is_main)
        stop = self.step >= total
        while not stop and self.epoch < cfg.epochs:
            self.train_set.set_epoch(self.epoch)
            sampler.set_epoch(self.epoch, start=self.batch_in_epoch * cfg.batch_size)
            for batch in self.make_loader(sampler):
                parts = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                bar.advance(time.time() - started)
                bar.set_postfix(step=f"{self.step}/{total}", loss=f"{parts['loss']:.4f}", epoch=self.epoch)
                if self.step % cfg.log_every == 0:
                    self.log(
                        {
                            "step": self.step,
                            "epoch": self.epoch,
                            "lr": self.lr_at(self.step),
                            "time": round(time.time() - started, 2),
                            **parts,
                        }
                    )
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
                out_of_time = cfg.max_minutes is not None and time.time() - started > cfg.max_minutes * 60
                if self.distributed and cfg.max_minutes is not None:  # the ranks' clocks differ: stop together
                    flag = torch.tensor([float(out_of_time)], device=self.device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    out_of_time = bool(flag.item())
                if self.step >= total or out_of_time:
                    stop = True
                    break
            if not stop:
                self.epoch += 1
                self.batch_in_epoch = 0
            summary = {"step": self.step, "epoch": self.epoch}
            if self.is_main:  # the other ranks go on (and wait for rank 0 at the next all-reduce)
                summary.update(self.validate())
                self.log(summary)
                self.write_grid()
                write_loss_curve(read_metrics(self.out / "metrics.jsonl"), self.out / "loss-curve.png")
                bar.write(
                    f"epoch {self.epoch}: step {self.step}, val PSNR {summary['val_psnr']:.2f} dB "
                    f"(hole {summary['val_psnr_hole']:.2f} dB)"
                )
        bar.close()
        self.save()
        summary["seconds"] = round(time.time() - started, 1)
        if self.distributed:
            summary["processes"] = self.world
        return summary

    def close(self) -> None:
        """Leave the process group this trainer joined (after every rank got here)."""
        if self._own_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self._own_group = False


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train from ``cfg``; under torchrun (WORLD_SIZE > 1) as one rank of a distributed run."""
    trainer = Trainer(cfg, resume=resume, overwrite=overwrite)
    try:
        return trainer.fit()
    finally:
        trainer.close()
