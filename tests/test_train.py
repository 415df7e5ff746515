import json
from pathlib import Path

import pytest
import torch

from fillgap.checkpoint import load_model, read_checkpoint
from fillgap.train.config import load_config
from fillgap.errors import FillgapError
from fillgap.masks import MaskGenerator
from fillgap.models import create_model
from fillgap.train import Trainer


def tiny_config(folder, out, **kw):
    base = dict(
        model="ffc-tiny",
        data=str(folder),
        size=32,
        batch_size=4,
        epochs=2,
        val_samples=4,
        out=str(out),
        checkpoint_every=2,
        log_every=1,
        progress=False,
        grid_samples=2,
    )
    base.update(kw)
    return load_config(None, base)


def test_tiny_model_overfits_eight_images():
    """Loss on 8 fixed (image, mask) pairs falls by 10x: the model, loss and optimiser can learn."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4, generator=g), size=32, mode="bilinear")
    masks = torch.stack([torch.from_numpy(MaskGenerator("box", 0)(32, 32, 0, i))[None] for i in range(8)])
    model = create_model("ffc-tiny", refine=False)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = (model(images, masks) - images).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < losses[0] / 10, (losses[0], losses[-5:])


def test_training_writes_checkpoint_metrics_grid_and_resumes(image_folder, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(image_folder, out, max_steps=3, epochs=10)
    summary = Trainer(cfg).fit()
    assert summary["step"] == 3
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and ckpt["config"]["model"] == "ffc-tiny"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_psnr_hole" in r for r in records) and any("loss" in r for r in records)
    assert list(out.glob("grid-epoch*.png"))
    # resume: continues from step 3, not from 0, and ends at the new limit
    resumed = Trainer(tiny_config(image_folder, out, max_steps=5, epochs=10), resume=True)
    assert resumed.step == 3
    assert resumed.fit()["step"] == 5
    assert read_checkpoint(out / "last.pt")["step"] == 5
    # the checkpoint is a usable model for fill
    assert load_model(out / "last.pt").registry_name == "ffc-tiny"


def test_resume_matches_an_uninterrupted_run(image_folder, tmp_path):
    """Two steps, stop, two more == four steps in one go (same data order, masks and weights)."""
    straight = Trainer(tiny_config(image_folder, tmp_path / "a", max_steps=4, epochs=10))
    straight.fit()
    first = Trainer(tiny_config(image_folder, tmp_path / "b", max_steps=2, epochs=10))
    first.fit()
    second = Trainer(tiny_config(image_folder, tmp_path / "b", max_steps=4, epochs=10), resume=True)
    second.fit()
    for (k, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def test_resume_without_checkpoint_is_a_clear_error(image_folder, tmp_path):
    with pytest.raises(FillgapError, match="checkpoint not found"):
        Trainer(tiny_config(image_folder, tmp_path / "none"), resume=True)


def test_seed_mnist_autoencoder_trains_on_digits(tmp_path, monkeypatch):
    """The seed system 1 path: 1-channel 28x28 data through the same trainer."""
    import numpy as np

    from fillgap.data.datasets import ArrayImages
    import fillgap.train.trainer as train_mod

    digits = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    monkeypatch.setattr(train_mod, "make_source", lambda spec, split: ArrayImages(digits))
    cfg = load_config(
        None,
        dict(
            model="seed-mnist-ae",
            data="mnist",
            size=28,
            batch_size=8,
            max_steps=2,
            masks="box",
            losses={"mse": 1.0},
            out=str(tmp_path / "m"),
            progress=False,
            val_samples=8,
        ),
    )
    assert Trainer(cfg).fit()["step"] == 2


def test_fixed_size_model_with_wrong_size_is_refused(image_folder, tmp_path):
    with pytest.raises(FillgapError, match="works at 512x512 only"):
        Trainer(tiny_config(image_folder, tmp_path / "x", model="seed-color-ae", size=64))


def test_init_fine_tunes_from_weights_and_refuses_another_model(image_folder, tmp_path):
    first = tmp_path / "first"
    Trainer(tiny_config(image_folder, first, max_steps=2, epochs=10)).fit()
    trained = read_checkpoint(first / "last.pt")["model"]
    # a setting that holds no weights (no prior to refine): the trained tensors carry over as they are
    tuned = Trainer(
        tiny_config(
            image_folder,
            tmp_path / "tuned",
            max_steps=1,
            epochs=10,
            init=str(first / "last.pt"),
            model_kwargs={"refine": False},
        )
    )
    state = tuned.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in trained.items())
    with pytest.raises(FillgapError, match="init weights"):
        Trainer(tiny_config(image_folder, tmp_path / "other", model="ffc-small", init=str(first / "last.pt")))


def test_adversarial_training_with_feature_matching_logs_both(image_folder, tmp_path):
    out = tmp_path / "gan"
    Trainer(tiny_config(image_folder, out, max_steps=2, epochs=10, adversarial=0.1, feature_matching=1.0)).fit()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert all("adv_g" in r and "feat_match" in r and r["feat_match"] > 0 for r in steps)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate_and_build(path):
    """Every config in configs/ loads (no unknown key, no bad value) and builds its network, so a
    typo shows up here, not minutes into a GPU lease."""
    cfg = load_config(path)
    model = create_model(cfg.model, **cfg.model_kwargs)
    assert sum(p.numel() for p in model.parameters()) > 0
