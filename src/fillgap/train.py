"""The training loop: config -> data, masks, losses -> model; checkpoints, resume, logs, grids.

Outputs in ``cfg.out``: ``last.pt`` (every ``checkpoint_every`` steps and at the end),
``metrics.jsonl`` (one line per log step and per epoch), ``grid-epochNNN.png``
(input | mask | output | truth per sample) and ``config.yaml``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import InpaintDataset, make_source
from .errors import FillgapError
from .imageio import to_uint8, write_image
from .losses import CompositeLoss, PatchDiscriminator, discriminator_adversarial, generator_adversarial
from .masks import MaskGenerator
from .models import create_model


class EpochSampler(Sampler[int]):
    """A permutation per (seed, epoch), optionally starting part-way (resume mid-epoch)."""

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch, self.start = length, seed, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.length)
        return iter(order[self.start:].tolist())

    def __len__(self) -> int:
        return self.length - self.start


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


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.out = Path(cfg.out)
        self.is_main = True
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, **cfg.model_kwargs).to(self.device)
        size = self.model.fixed_size or cfg.size
        if self.model.fixed_size and cfg.size != self.model.fixed_size:
            raise FillgapError(f"model '{cfg.model}' works at {self.model.fixed_size}x{self.model.fixed_size} only: "
                               f"set size: {self.model.fixed_size}")
        if size % self.model.size_multiple:
            raise FillgapError(f"size {size} must be a multiple of {self.model.size_multiple} for '{cfg.model}'")
        self.train_set = InpaintDataset(make_source(cfg.data, "train"), size, MaskGenerator(cfg.masks, cfg.seed),
                                        seed=cfg.seed, samples_per_epoch=cfg.samples_per_epoch, scale=cfg.scale)
        val_source = make_source(cfg.val_data or cfg.data, "val")
        self.val_set = InpaintDataset(val_source, size, MaskGenerator(cfg.masks, cfg.seed + 1), seed=cfg.seed + 1,
                                      samples_per_epoch=cfg.val_samples, scale=cfg.scale, augment=False, fixed=True)
        if self.train_set[0]["image"].shape[0] != self.model.channels:
            raise FillgapError(f"model '{cfg.model}' takes {self.model.channels}-channel images, "
                               f"data '{cfg.data}' gives {self.train_set[0]['image'].shape[0]}")
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

    # -- state ---------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.cfg.batch_size)

    def total_steps(self) -> int:
        by_epochs = self.cfg.epochs * self.steps_per_epoch()
        return min(by_epochs, self.cfg.max_steps) if self.cfg.max_steps else by_epochs

    def _resume(self) -> None:
        path = self.out / "last.pt"
        ckpt = read_checkpoint(path)
        if ckpt["model_name"] != self.cfg.model:
            raise FillgapError(f"{path} holds model '{ckpt['model_name']}', the config asks for '{self.cfg.model}'")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        if self.disc is not None and "disc" in ckpt:
            self.disc.load_state_dict(ckpt["disc"])
            self.disc_opt.load_state_dict(ckpt["disc_optimizer"])
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        torch.set_rng_state(ckpt["torch_rng"])

    def save(self, name: str = "last.pt") -> None:
        if not self.is_main:
            return
        extra = {}
        if self.disc is not None:
            extra = {"disc": self.disc.state_dict(), "disc_optimizer": self.disc_opt.state_dict()}
        save_checkpoint(self.out / name, self.model, optimizer=self.opt.state_dict(), step=self.step,
                        epoch=self.epoch, batch_in_epoch=self.batch_in_epoch, config=self.cfg.model_dump(),
                        torch_rng=torch.get_rng_state(), **extra)

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
    def train_step(self, batch: dict) -> dict:
        image, mask = batch["image"].to(self.device), batch["mask"].to(self.device)
        hole = (mask > 0).float()
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.model.train()
        pred = self.model(image, mask)
        loss, parts = self.loss(pred, image, hole)
        use_adv = self.disc is not None and self.step >= self.cfg.adversarial_start
        if use_adv:
            adv = generator_adversarial(self.disc, pred * hole + image * (1 - hole), hole)
            loss = loss + self.cfg.adversarial * adv
            parts["adv_g"] = float(adv.detach())
        if not torch.isfinite(loss):
            raise FillgapError(f"loss became {float(loss)} at step {self.step}: training stopped, "
                               f"the last good checkpoint is {self.out / 'last.pt'}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if use_adv:
            d_loss = discriminator_adversarial(self.disc, image, pred * hole + image * (1 - hole), hole, self.cfg.r1)
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
            parts["adv_d"] = float(d_loss.detach())
        parts["loss"] = float(loss.detach())
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
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=sampler,
                          num_workers=self.cfg.workers, drop_last=False,
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def fit(self) -> dict:
        cfg = self.cfg
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        sampler = EpochSampler(len(self.train_set), cfg.seed)
        total = self.total_steps()
        started = time.time()
        summary: dict = {}
        bar = tqdm(total=total, initial=self.step, disable=not (cfg.progress and self.is_main),
                   unit="step", dynamic_ncols=True)
        stop = self.step >= total
        while not stop and self.epoch < cfg.epochs:
            self.train_set.set_epoch(self.epoch)
            sampler.set_epoch(self.epoch, start=self.batch_in_epoch * cfg.batch_size)
            for batch in self.make_loader(sampler):
                parts = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.4f}", epoch=self.epoch)
                if self.step % cfg.log_every == 0:
                    self.log({"step": self.step, "epoch": self.epoch, "lr": self.lr_at(self.step),
                              "time": round(time.time() - started, 2), **parts})
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
                out_of_time = cfg.max_minutes is not None and time.time() - started > cfg.max_minutes * 60
                if self.step >= total or out_of_time:
                    stop = True
                    break
            if not stop:
                self.epoch += 1
                self.batch_in_epoch = 0
            summary = {"step": self.step, "epoch": self.epoch, **self.validate()}
            self.log(summary)
            self.write_grid()
            if self.is_main:
                bar.write(f"epoch {self.epoch}: step {self.step}, val PSNR {summary['val_psnr']:.2f} dB "
                          f"(hole {summary['val_psnr_hole']:.2f} dB)")
        bar.close()
        self.save()
        summary["seconds"] = round(time.time() - started, 1)
        return summary


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    return Trainer(cfg, resume=resume).fit()
