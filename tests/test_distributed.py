"""Distributed training: rank sharding, synchronised BatchNorm, and 2 gloo processes == 1 process."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from fillgap.train.config import load_config
from fillgap.data import FolderImages
from fillgap.data.datasets import ManifestImages, make_source
from fillgap.errors import FillgapError
from fillgap.train.distributed import CPUSyncBatchNorm, convert_cpu_sync_batchnorm
from fillgap.train import EpochSampler, Trainer, train


@pytest.mark.parametrize("length,start", [(10, 0), (10, 4), (11, 0), (7, 6), (5, 5)])
def test_rank_batches_together_are_the_single_process_batches(length, start):
    batch, world = 4, 2
    single = EpochSampler(length, seed=5)
    single.set_epoch(3, start=start)
    order = list(single)
    ranks = []
    for r in range(world):
        s = EpochSampler(length, seed=5, rank=r, world=world)
        s.set_epoch(3, start=start)
        ranks.append(list(s))
        assert len(ranks[-1]) == len(s)
    assert len(ranks[0]) == len(ranks[1])  # same number of steps on every rank
    per_rank = batch // world
    steps = -(-len(order) // batch)
    for k in range(steps):
        union = sorted(i for r in ranks for i in r[k * per_rank : (k + 1) * per_rank])
        expected = sorted(order[k * batch : (k + 1) * batch])
        if len(expected) % world == 0:
            assert union == expected
        else:  # an odd tail: padded with a sample seen earlier in the epoch
            assert set(expected) <= set(union) and set(union) <= set(order)
    assert set(ranks[0]).isdisjoint(ranks[1]) or len(order) % world


def test_cpu_sync_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(4)))
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 3, 8, 8)
    expected = net(x)
    net.load_state_dict(ref)
    converted = convert_cpu_sync_batchnorm(net)
    assert sum(isinstance(m, CPUSyncBatchNorm) for m in converted.modules()) == 2
    assert set(converted.state_dict()) == set(ref)
    torch.testing.assert_close(converted(x), expected)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _config(tmp_path, folder, **extra):
    cfg = dict(
        model="ffc-tiny",
        data=str(folder),
        size=32,
        samples_per_epoch=12,
        val_samples=4,
        batch_size=4,
        epochs=1,
        lr=0.01,
        losses={"l1": 1.0},
        hole_weight=1.0,
        seed=3,
        progress=False,
        checkpoint_every=100,
        log_every=1,
        grid_samples=2,
        **extra,
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fillgap(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fillgap", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _max_param_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _assert_same_training(one: dict, two: dict) -> None:
    """Two checkpoints whose last step started from the same weights and moments (a first step,
    or a step after a common start), up to float rounding. Not compared weight by weight: each
    Adam step moves a weight whose gradient is new (its first one, or the first since the
    zero-initialised head let it through) by about lr * sign(gradient), so a weight whose
    gradient is ~0 moves +-lr by the rounding of a sum that two runs add in another order, and
    from then on the runs differ chaotically (2-21 % in the moments after 3 steps, depending on
    the seed, or on a 1e-7 change in the prior's rounding). Adam's first moments (running means
    of the gradients) compare instead: they scale with the gradients, so a wrong reduction (a sum instead of a
    mean, one rank's half only) is off by 50 % or more; equal runs agree within 3 %."""
    m1, m2 = one["optimizer"]["state"], two["optimizer"]["state"]
    assert m1.keys() == m2.keys()
    for k in m1:
        a, b = m1[k]["exp_avg"], m2[k]["exp_avg"]
        assert (a - b).abs().max() <= 0.03 * a.abs().max() + 1e-12, k
    assert _max_param_diff(one["model"], two["model"]) < 0.1  # at most a few lr-sized sign steps apart


def test_two_gloo_processes_equal_one_process_and_write_once(image_folder, tmp_path):
    """Plain means as losses (hole_weight 1): the DDP step must equal the single-process step."""
    cfg_path = _config(tmp_path, image_folder)
    single = train(load_config(cfg_path, {"out": str(tmp_path / "one")}))
    assert single["step"] == 3

    run = _fillgap("train", "--config", str(cfg_path), "--out", str(tmp_path / "two"), "--nproc", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr

    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert two["world_size"] == 2 and two["rank"] == 0 and two["step"] == 3
    torch.manual_seed(3)
    from fillgap.models import create_model

    init = create_model("ffc-tiny").state_dict()
    assert _max_param_diff(one["model"], init) > 1e-3  # training moved the weights
    # the gradients themselves: one step each, from the same start (see _assert_same_training)
    train(load_config(cfg_path, {"out": str(tmp_path / "one-step"), "max_steps": 1}))
    run = _fillgap(
        "train", "--config", str(cfg_path), "--out", str(tmp_path / "two-step"), "--nproc", "2", "--max-steps", "1"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    _assert_same_training(
        torch.load(tmp_path / "one-step" / "last.pt", weights_only=True),
        torch.load(tmp_path / "two-step" / "last.pt", weights_only=True),
    )

    # Only rank 0 wrote: one checkpoint, one set of logs (3 step lines + 1 validation line), one grid.
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == [".fillgap-lock", "config.yaml", "grid-epoch000.png", "last.pt", "loss-curve.png", "metrics.jsonl"]
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    single_lines = (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    for a, b in zip(lines[:3], single_lines[:3]):  # the logged loss is the global batch's
        assert yaml.safe_load(a)["loss"] == pytest.approx(yaml.safe_load(b)["loss"], rel=1e-4)


def test_distributed_resume_continues_a_checkpoint(image_folder, tmp_path):
    """2 steps in one process, then --resume with 2 processes: the same weights as 3 steps in one."""
    cfg_path = _config(tmp_path, image_folder)
    train(load_config(cfg_path, {"out": str(tmp_path / "ref")}))
    train(load_config(cfg_path, {"out": str(tmp_path / "run"), "max_steps": 2}))
    run = _fillgap("train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--nproc", "2", "--resume")
    assert run.returncode == 0, run.stderr[-2000:]
    ref = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    got = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert got["step"] == 3 and got["world_size"] == 2
    _assert_same_training(ref, got)


def test_bf16_autocast_is_a_config_flag_off_by_default_on_cpu(image_folder, tmp_path):
    cfg_path = _config(tmp_path, image_folder)
    assert not Trainer(load_config(cfg_path, {"out": str(tmp_path / "a")})).bf16
    trainer = Trainer(load_config(cfg_path, {"out": str(tmp_path / "b"), "bf16": True}))
    with trainer._autocast():
        assert trainer.model.down[0](torch.rand(1, 4, 32, 32)).dtype == torch.bfloat16
    batch = next(iter(trainer.make_loader(EpochSampler(len(trainer.train_set), 0))))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    parts = trainer.train_step(batch)
    assert np.isfinite(parts["loss"]) and _max_param_diff(before, trainer.model.state_dict()) > 0


def test_nproc_must_divide_the_batch(image_folder, tmp_path):
    cfg_path = _config(tmp_path, image_folder)
    run = _fillgap("train", "--config", str(cfg_path), "--out", str(tmp_path / "x"), "--nproc", "3", timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == ["fillgap: error: batch_size 4 is not a multiple of --nproc 3"]


def test_manifest_source_reads_lazily(image_folder, tmp_path):
    files = sorted(image_folder.glob("*.png"))
    manifest = tmp_path / "list.txt"
    lines = [
        "# training pictures",
        "",
        *[os.path.relpath(f, tmp_path) for f in files[:5]],
        str(files[5]),
        "missing.png",
    ]
    manifest.write_text("\n".join(lines) + "\n")
    src = make_source(str(manifest))
    assert isinstance(src, ManifestImages) and len(src) == 7 and src._cache == {}
    np.testing.assert_array_equal(src[5], FolderImages(image_folder)[5])
    with pytest.warns(UserWarning, match="missing.png"):
        np.testing.assert_array_equal(src[6], src[0])  # a bad file: the next good one instead
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(FillgapError, match="lists no files"):
        make_source(str(empty))
