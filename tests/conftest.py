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


@pytest.fixture
def one_thread():
    """One torch intra-op thread (and so one onnxruntime thread) for the test: on a busy 2-core
    machine two threads wait for each other; a distributed rank also runs with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A random (not zero-headed) ffc-tiny as released weights: any difference between paths shows."""
    from fillgap.checkpoint import export_weights
    from fillgap.models import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    export_weights(path, create_model("ffc-tiny", refine=False))
    return str(path)
