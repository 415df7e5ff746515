import pytest
import torch
import torch.nn.functional as F

from fillgap.models import create_model
from fillgap.fill.cra import aggregate_residual
from fillgap.models.attention import AttentionBlock, ContextualAttention, contextual_attention


def _copied_region(size=20, c=6, seed=0):
    """Random features whose hole (rows/cols 11:19) is an exact copy of a known region (1:9)."""
    g = torch.Generator().manual_seed(seed)
    feat = torch.rand(1, c, size, size, generator=g)
    feat[..., 11:19, 11:19] = feat[..., 1:9, 1:9]
    hole = torch.zeros(1, 1, size, size)
    hole[..., 11:19, 11:19] = 1
    return feat, hole


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("topk", [None, 1])
def test_attention_copies_the_exact_known_patch(fold, topk):
    feat, hole = _copied_region()
    # Values at twice the resolution: each position owns a 2 x 2 cell.
    value = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    out = contextual_attention(feat, hole, value, scale=1000.0, topk=topk, fold=fold)
    # Interior cells (every query writing there has its whole patch inside the copy).
    inner = slice(2 * 13, 2 * 17)
    source = slice(2 * 3, 2 * 7)
    assert torch.allclose(out[..., inner, inner], value[..., source, source], atol=1e-4)
    # A random value map would not match by chance.
    assert not torch.allclose(out[..., inner, inner], value[..., inner, inner], atol=1e-2)


def test_batched_equals_one_by_one_and_is_deterministic():
    g = torch.Generator().manual_seed(2)
    feat = torch.rand(3, 5, 12, 16, generator=g)
    value = torch.rand(3, 4, 24, 32, generator=g)
    hole = torch.zeros(3, 1, 12, 16)
    hole[0, :, 2:6, 3:9] = 1
    hole[1, :, 5:11, 1:4] = 1
    hole[2, :, 0:3, 10:16] = 1
    attn = ContextualAttention(topk=None, chunk=17)  # odd chunk: several partial chunks
    batched = attn(feat, hole, value)
    assert batched.shape == value.shape and torch.isfinite(batched).all()
    single = torch.cat([attn(feat[i : i + 1], hole[i : i + 1], value[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6)
    assert torch.equal(batched, attn(feat, hole, value))
    whole = ContextualAttention(topk=None, chunk=10_000)(feat, hole, value)
    assert torch.allclose(batched, whole, atol=1e-6)


def test_attention_only_reads_known_keys():
    """Changing values that sit in the hole must not change any output."""
    feat, hole = _copied_region()
    value = torch.rand(1, 2, 20, 20)
    other = value.clone()
    other[..., 11:19, 11:19] = 5.0
    attn = ContextualAttention(topk=None)
    assert torch.allclose(attn(feat, hole, value), attn(feat, hole, other))


def test_no_known_key_gives_zero_not_nan():
    feat = torch.rand(2, 3, 8, 8)
    hole = torch.zeros(2, 1, 8, 8)
    hole[0] = 1
    out = ContextualAttention()(feat, hole)
    assert torch.isfinite(out).all() and out[0].abs().max() == 0 and out[1].abs().max() > 0


def test_attention_block_starts_as_identity_and_learns():
    block = AttentionBlock(16, key_ch=4)
    x = torch.rand(2, 16, 8, 8, requires_grad=True)
    hole = torch.zeros(2, 1, 32, 32)  # a full-resolution hole: pooled to 8 x 8 inside
    hole[..., 8:20, 8:20] = 1
    y = block(x, hole)
    assert torch.equal(y, x)
    y.square().sum().backward()
    assert block.out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [(32, 32), (48, 64)])
def test_ffc_with_attention_block(size):
    torch.manual_seed(0)
    model = create_model("ffc-tiny", attention=True).eval()
    assert model.attention is not None and create_model("ffc-tiny").attention is None
    x = torch.rand(2, 3, *size)
    mask = torch.zeros(2, 1, *size)
    mask[..., 4:12, 4:20] = 1
    plain = create_model("ffc-tiny").eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("attention.")})
    assert torch.allclose(model(x, mask), plain(x, mask))  # the zero-init block is the identity


def _texture(h, w):
    """Colour checkerboard, 10 px period, on a slow brightness ramp."""
    y = torch.arange(h).float()[:, None]
    x = torch.arange(w).float()[None]
    c = ((x // 5) + (y // 5)) % 2
    ramp = 0.8 + 0.2 * y / h
    return (torch.stack([0.2 + 0.6 * c, 0.3 + 0.4 * c, 0.7 - 0.5 * c]) * ramp)[None]


def _detail(img, hole):
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])[None, None]
    return F.conv2d(img.mean(1, keepdim=True), lap, padding=1)[hole > 0].std()


def test_aggregate_residual_restores_texture_detail():
    img = _texture(128, 160)
    hole = torch.zeros(1, 1, 128, 160)
    hole[..., 40:85, 60:110] = 1
    coarse = F.interpolate(img, size=(32, 40), mode="area")  # a (perfect) low-resolution fill
    upsampled = F.interpolate(coarse, size=(128, 160), mode="bilinear", align_corners=False)
    plain = torch.where(hole > 0, upsampled, img)
    out = aggregate_residual(img, hole, coarse)
    base = _detail(img, hole)
    assert _detail(plain, hole) / base < 0.3
    assert 0.85 < _detail(out, hole) / base < 1.2
    assert torch.equal(out[(hole > 0).expand_as(out).logical_not()], img[(hole > 0).expand_as(img).logical_not()])
    hole_px = (hole > 0).expand_as(img)
    assert (out - img)[hole_px].abs().mean() < 0.5 * (plain - img)[hole_px].abs().mean()


def test_aggregate_residual_batched_deterministic_and_checks_shapes():
    g = torch.Generator().manual_seed(3)
    img = torch.rand(2, 3, 48, 64, generator=g)
    hole = torch.zeros(2, 1, 48, 64)
    hole[0, :, 10:20, 10:30] = 1
    hole[1, :, 30:44, 40:60] = 0.5  # grey counts as missing
    coarse = F.interpolate(img, size=(12, 16), mode="area")
    out = aggregate_residual(img, hole, coarse)
    single = torch.cat([aggregate_residual(img[i : i + 1], hole[i : i + 1], coarse[i : i + 1]) for i in range(2)])
    assert torch.allclose(out, single, atol=1e-6) and torch.equal(out, aggregate_residual(img, hole, coarse))
    assert out.dtype == img.dtype and 0 <= out.min() and out.max() <= 1
    assert torch.equal(aggregate_residual(img, torch.zeros_like(hole), coarse), img)
    with pytest.raises(ValueError):
        aggregate_residual(img, hole[:, :, :40], coarse)
    scratch = img.clone()  # in place: the same result, written into the input
    assert aggregate_residual(scratch, hole, coarse, inplace=True) is scratch and torch.equal(scratch, out)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_attention_on_cuda_matches_cpu():
    feat, hole = _copied_region()
    value = torch.rand(1, 3, 40, 40)
    cpu = contextual_attention(feat, hole, value, topk=4)
    gpu = contextual_attention(feat.cuda(), hole.cuda(), value.cuda(), topk=4)
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)
    img = _texture(64, 64)
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 20:40, 20:40] = 1
    coarse = F.interpolate(img, size=(16, 16), mode="area")
    assert torch.allclose(
        aggregate_residual(img, hole, coarse),
        aggregate_residual(img.cuda(), hole.cuda(), coarse.cuda()).cpu(),
        atol=1e-4,
    )


def test_attention_block_bounds_large_maps():
    torch.manual_seed(0)
    block = AttentionBlock(8, key_ch=4, max_positions=64)
    torch.nn.init.normal_(block.out.weight)
    x = torch.rand(1, 8, 30, 21)  # 630 positions: matched on 4 x 4 cells (8 x 6 grid, padded)
    hole = torch.zeros(1, 1, 30, 21)
    hole[..., 10:20, 5:15] = 1
    y = block(x, hole)
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(y, x)


def test_aggregate_residual_on_uint8_is_the_float_result_rounded():
    """A uint8 picture (what the pipeline's cra strategy hands over, to spare a float copy of a
    big window) gives the float result rounded half up, and its own pixels outside the hole."""
    g = torch.Generator().manual_seed(5)
    pixels = torch.randint(0, 256, (1, 3, 64, 80), generator=g, dtype=torch.uint8)
    img = pixels.float() / 255
    hole = torch.zeros(1, 1, 64, 80)
    hole[..., 20:40, 25:60] = 1
    coarse = F.interpolate(img, size=(16, 20), mode="area")
    want = (aggregate_residual(img, hole, coarse) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    got = aggregate_residual(pixels, hole, coarse)
    assert got.dtype == torch.uint8 and torch.equal(got, want)
    scratch = pixels.clone()
    assert aggregate_residual(scratch, hole, coarse, inplace=True) is scratch and torch.equal(scratch, want)


def test_area_resize_of_uint8_equals_the_float_interpolation():
    from fillgap.fill.tensors import area_resize, as_float

    pixels = torch.randint(0, 256, (2, 3, 37, 50), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    assert torch.equal(area_resize(pixels, (10, 13)), F.interpolate(as_float(pixels), size=(10, 13), mode="area"))
