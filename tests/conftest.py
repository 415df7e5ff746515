import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def photo():
    """A small real photo (bundled held-out image) as uint8 H x W x 3."""
    from fillgap.data import bundled_photos
    return bundled_photos("test")[0][:96, :128].copy()


@pytest.fixture
def image_folder(tmp_path):
    """Eight small smooth RGB images in a folder."""
    from PIL import Image
    folder = tmp_path / "images"
    folder.mkdir()
    g = np.random.default_rng(1)
    for i in range(8):
        low = g.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(low).resize((48, 40), Image.BILINEAR).save(folder / f"img{i}.png")
    return folder
