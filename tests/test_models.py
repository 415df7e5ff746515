import pytest
import torch

from fillgap.errors import FillgapError
from fillgap.models import create_model, list_models
from fillgap.models.ffc import FFCInpainter, FourierUnit, SpectralTransform


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_all_models_and_refuses_unknown():
    assert {"seed-mnist-ae", "seed-color-ae", "ffc-tiny", "ffc-small", "ffc-base"} <= set(list_models())
    with pytest.raises(FillgapError, match="unknown model 'nope'"):
        create_model("nope")


def test_names_known_without_torch_are_the_registry():
    # fillgap.models.NAMES answers the CLI's questions before the model files (and torch) load
    from fillgap.models import NAMES, model_names

    assert list(NAMES) == list_models() == model_names()


def test_seed_mnist_ae_shapes():
    model = create_model("seed-mnist-ae").eval()
    x = torch.rand(2, 1, 28, 28)
    mask = torch.zeros(2, 1, 28, 28)
    mask[:, :, 5:12, 5:12] = 1
    assert model.encoder(x).shape == (2, 32, 3, 3)
    out = model(x, mask)
    assert out.shape == (2, 1, 28, 28) and 0 <= out.min() and out.max() <= 1


def test_seed_color_ae_shapes_follow_the_spec():
    model = create_model("seed-color-ae").eval()
    x = torch.rand(1, 3, 512, 512)
    z = model.encoder(x)
    assert z.shape == (1, 32, 8, 8)  # 2048 numbers, as in the study
    out = model(x, torch.zeros(1, 1, 512, 512))
    assert out.shape == (1, 3, 512, 512)


def test_model_never_sees_hole_pixels():
    torch.manual_seed(0)
    model = create_model("ffc-tiny", refine=False).eval()
    x = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 8:20] = 0.3  # grey: still a hole for the network
    y = x.clone()
    y[..., 8:20, 8:20] = torch.rand(1, 3, 12, 12)
    assert torch.equal(model(x, mask), model(y, mask))


def test_ffc_presets_sizes():
    assert count(create_model("ffc-small")) < 5_000_000
    assert 20_000_000 < count(create_model("ffc-base")) < 35_000_000


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (64, 40)])
def test_ffc_output_shapes_at_several_sizes(size):
    model = create_model("ffc-tiny").eval()
    x = torch.rand(2, 3, *size)
    mask = torch.zeros(2, 1, *size)
    mask[..., 4:12, 4:20] = 1
    out = model(x, mask)
    assert out.shape == x.shape


def test_ffc_lfu_variant_runs_and_needs_even_bottleneck():
    model = FFCInpainter(width=8, downsamplings=2, blocks=1, global_ratio=0.5, enable_lfu=True).eval()
    assert model.size_multiple == 8
    assert model(torch.rand(1, 3, 40, 48), torch.ones(1, 1, 40, 48)).shape == (1, 3, 40, 48)


def test_fourier_unit_of_constant_image():
    """A constant picture has all its energy at frequency 0; with an identity 1x1 conv (and
    BN in eval mode with unit statistics), the unit returns relu of the same constant."""
    fu = FourierUnit(1, 1).eval()
    with torch.no_grad():
        fu.conv.weight.zero_()
        fu.conv.weight[0, 0] = 1.0  # real -> real
        fu.conv.weight[1, 1] = 1.0  # imag -> imag
    x = torch.full((1, 1, 8, 10), 0.7)
    spec = torch.fft.rfft2(x, norm="ortho")
    assert torch.allclose(spec[0, 0, 0, 0].real, torch.tensor(0.7 * (80**0.5)))
    assert spec.abs()[0, 0].flatten()[1:].max() < 1e-5
    assert torch.allclose(fu(x), x, atol=1e-5)


def test_spectral_transform_is_global():
    """Changing one pixel changes the global branch's output everywhere (whole-image receptive field)."""
    torch.manual_seed(0)
    st = SpectralTransform(4, 4).eval()
    x = torch.rand(1, 4, 16, 16)
    y = x.clone()
    y[0, :, 0, 0] += 1.0
    diff = (st(x) - st(y)).abs().sum(dim=1)[0]
    assert (diff > 1e-6).float().mean() > 0.9


def test_ffc_runs_at_twice_training_size():
    model = create_model("ffc-tiny").eval()
    for s in (64, 128):
        mask = torch.zeros(1, 1, s, s)
        mask[..., s // 4 : s // 2, s // 4 : s // 2] = 1
        assert model(torch.rand(1, 3, s, s), mask).shape == (1, 3, s, s)


@pytest.mark.parametrize("prior", ["diffusion"])
def test_refine_model_starts_as_its_prior(prior):
    from fillgap.models.ffc import PRIORS

    model = create_model("ffc-tiny", prior=prior).eval()
    x = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 10:20, 10:20] = 1
    out = model(x, mask)
    ref = PRIORS[prior]()(x * (1 - mask), mask)
    assert torch.allclose(out, ref.clamp(1e-3, 1 - 1e-3), atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
@pytest.mark.parametrize("kernel", [(7, 7), (3, 5)])
def test_column_sum_conv_equals_the_convolution(mode, kernel):
    from fillgap.models.ffc import ColumnSumConv

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 3, kernel, padding=(kernel[0] // 2, kernel[1] // 2), padding_mode=mode)
    fast = ColumnSumConv(conv)
    x = torch.rand(2, 8, 19, 33)
    with torch.no_grad():
        ref = conv(x)
        assert torch.allclose(fast(x), ref, atol=1e-5)
        assert torch.allclose(fast(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 out, bf16 rounding only inside
            got = fast(x)
        assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=0.05)
    with pytest.raises(ValueError):
        ColumnSumConv(torch.nn.Conv2d(8, 3, 3, stride=2, padding=1))


@pytest.mark.parametrize("preset", ["ffc-tiny", "ffc-small"])
def test_for_inference_folds_batch_norms_without_changing_the_fill(preset):
    torch.manual_seed(0)
    net = create_model(preset).eval()
    for m in net.modules():  # batch norms that are not the identity, and a head that is not zero
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    torch.nn.init.normal_(net.head.weight, std=0.05)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = net.for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert not isinstance(fast.head, torch.nn.Conv2d)  # the 3-channel head as column sums
    x, hole = torch.rand(2, 3, 32, 48), (torch.rand(2, 1, 32, 48) > 0.6).float()
    with torch.no_grad():
        ref, got = net(x, hole), fast(x, hole)
    assert (ref - x).abs().max() > 0.05  # the network does something
    assert torch.allclose(ref, got, atol=1e-5)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the original is untouched
    with torch.no_grad():  # folding a folded network changes nothing
        assert torch.allclose(fast.for_inference()(x, hole), got, atol=1e-6)
