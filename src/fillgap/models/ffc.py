"""LaMa-style inpainting network with fast Fourier convolutions (Suvorov et al., WACV 2022).

Self-contained: the Fourier unit, the spectral transform, the FFC layer, its residual
block and the generator. An FFC splits channels into a local branch (ordinary 3x3
convolutions) and a global branch whose spectral transform mixes every pixel with every
other one through a real FFT, so the receptive field is the whole picture from the first
block on, and the network keeps working at resolutions above its training size.

``refine=True`` (the shipped default): the network is handed a classical fill of the hole
(``prior``: the pure-torch multi-scale diffusion of ``prior.py``; the OpenCV Telea start of the
first weights is gone with them, so every model is pure torch) and learns a correction of it. Its last convolution starts at
zero, so an untrained net reproduces the prior exactly, and training only has to add what
interpolation cannot. Shared notes (flagship-probe.md) measured this beats the same
network trained from scratch on the little data and compute we have.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm  # BatchNorm2d and the synchronised kinds

from . import register_model
from .attention import AttentionBlock
from .base import InpaintModel
from .prior import DiffusionPrior


def _dft_angles(n: int, k: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(2 pi (i * j mod n) / n for i < n, j < k; n as a float tensor).

    The integer mod keeps the angles exact for any n. n is read back from a tensor, not used
    in Python arithmetic, so that an exported graph keeps H and W dynamic.
    """
    i = torch.arange(n, device=like.device)
    j = torch.arange(k, device=like.device)
    n_t = i[-1:] + 1
    n_f = n_t.to(like.dtype)
    return (torch.outer(i, j) % n_t).to(like.dtype) * (2 * torch.pi) / n_f, n_f


def rfft2_matmul(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.fft.rfft2(x, norm="ortho")`` as (real, imag), by matrix products only.

    ONNX has a DFT operator, but ONNX Runtime fails on the one-sided form the exporter emits
    and falls back to a naive loop for sizes that are not powers of two; matrix products
    export with dynamic H, W and run on the runtime's GEMM.
    """
    h, w = x.shape[-2:]
    a, w_f = _dft_angles(w, w // 2 + 1, x)  # W x K
    b, h_f = _dft_angles(h, h, x)
    c, s = b.cos(), b.sin()
    # along W: exp(-i a) = cos a - i sin a, with the 1 / sqrt(H W) of "ortho" folded in
    spec = x @ (torch.cat([a.cos(), -a.sin()], dim=1) * (h_f * w_f).rsqrt())  # N C H 2K: [re | im]
    k = a.shape[1]
    re, im = spec[..., :k], spec[..., k:]  # slices, not chunk: the exporter folds chunk badly on dynamic sizes
    # along H: (c - i s)(re + i im), one real product on [re; im] stacked along H
    out = torch.cat([torch.cat([c, s], 1), torch.cat([-s, c], 1)], 0) @ torch.cat([re, im], dim=-2)
    return out[..., :h, :], out[..., h:, :]


def irfft2_matmul(re: torch.Tensor, im: torch.Tensor, w: int) -> torch.Tensor:
    """``torch.fft.irfft2(complex(re, im), s=(H, w), norm="ortho")`` by matrix products only."""
    h, k = re.shape[-2:]
    b, h_f = _dft_angles(h, h, re)
    c, s = b.cos(), b.sin()
    # inverse along H: (c + i s)(re + i im)
    g = torch.cat([torch.cat([c, -s], 1), torch.cat([s, c], 1)], 0) @ torch.cat([re, im], dim=-2)
    g_re, g_im = g[..., :h, :], g[..., h:, :]
    # one-sided inverse along W: bins other than 0 and w/2 stand for their mirror image too
    # (counted twice); the imaginary part of those two drops out since sin is 0 there.
    a, w_f = _dft_angles(w, k, re)
    j = torch.arange(k, device=re.device).to(re.dtype)
    twice = torch.where((j == 0) | (2 * j == w_f), 1.0, 2.0).to(re.dtype)[:, None] * (h_f * w_f).rsqrt()
    basis = torch.cat([a.t().cos() * twice, -a.t().sin() * twice], dim=0)  # 2K x W
    return torch.cat([g_re, g_im], dim=-1) @ basis


def reflect_pad(x: torch.Tensor, pad: tuple[int, ...]) -> torch.Tensor:
    """``F.pad(x, pad, mode="reflect")`` in ``x``'s own precision. CPU autocast runs reflect
    padding in float32 (a cast of the whole tensor each way: 10-20x slower on bf16 activations);
    padding only copies values, so any precision is exact."""
    if not torch.is_autocast_enabled(x.device.type):
        return F.pad(x, pad, mode="reflect")
    with torch.autocast(x.device.type, enabled=False):
        return F.pad(x, pad, mode="reflect")


class ReflectConv2d(nn.Conv2d):
    """``nn.Conv2d(..., padding_mode="reflect")`` (same weights and state dict), padded by ``reflect_pad``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding_mode="reflect", **kwargs)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(
            reflect_pad(x, self._reversed_padding_repeated_twice),
            weight,
            bias,
            self.stride,
            0,
            self.dilation,
            self.groups,
        )


class FourierUnit(nn.Module):
    """1x1 convolution in the frequency domain: rFFT over H, W -> conv on (real, imag) -> inverse rFFT.

    ``matmul_dft`` (set for ONNX export, also on while exporting): the same transform as
    dense DFT matrix products, equal to the FFT up to float rounding.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch * 2, out_ch * 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch * 2)
        self.matmul_dft = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.matmul_dft or torch.onnx.is_in_onnx_export():
            re, im = rfft2_matmul(x.float())
        else:
            spec = torch.fft.rfft2(x.float(), norm="ortho")  # N, C, H, W//2+1 complex
            re, im = spec.real, spec.imag
        spec = torch.cat([re, im], dim=1).to(x.dtype)
        spec = F.relu(self.bn(self.conv(spec)))
        real, imag = spec.float().chunk(2, dim=1)
        if self.matmul_dft or torch.onnx.is_in_onnx_export():
            return irfft2_matmul(real, imag, w).to(x.dtype)
        return torch.fft.irfft2(torch.complex(real, imag), s=(h, w), norm="ortho").to(x.dtype)


class SpectralTransform(nn.Module):
    """The global branch: 1x1 squeeze -> Fourier unit (+ optional local Fourier unit) -> 1x1."""

    def __init__(self, in_ch: int, out_ch: int, enable_lfu: bool = False):
        super().__init__()
        half = out_ch // 2
        self.squeeze = nn.Sequential(nn.Conv2d(in_ch, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(True))
        self.fu = FourierUnit(half, half)
        self.lfu = FourierUnit(half, half) if enable_lfu else None
        self.expand = nn.Conv2d(half, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        out = x + self.fu(x)
        if self.lfu is not None:
            # Local Fourier unit: a quarter of the channels, the picture cut into 2x2 tiles
            # stacked as channels, so the FFT sees finer-scale periodic structure.
            n, c, h, w = x.shape
            part = x[:, : c // 4]
            part = torch.cat(torch.split(part, h // 2, dim=2), dim=1)
            part = torch.cat(torch.split(part, w // 2, dim=3), dim=1)
            out = out + self.lfu(part).repeat(1, 1, 2, 2)
        return self.expand(out)


class FFC(nn.Module):
    """Fast Fourier convolution: local (l) and global (g) channel groups, four paths between them."""

    def __init__(
        self, in_ch: int, out_ch: int, ratio_in: float, ratio_out: float, kernel: int = 3, enable_lfu: bool = False
    ):
        super().__init__()
        in_g, out_g = int(in_ch * ratio_in), int(out_ch * ratio_out)
        in_l, out_l = in_ch - in_g, out_ch - out_g
        self.in_g, self.out_g = in_g, out_g
        pad = kernel // 2

        def conv(i, o):
            return ReflectConv2d(i, o, kernel, padding=pad, bias=False) if i and o else None

        self.l2l, self.l2g, self.g2l = conv(in_l, out_l), conv(in_l, out_g), conv(in_g, out_l)
        self.g2g = SpectralTransform(in_g, out_g, enable_lfu) if in_g and out_g else None

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor | None):
        out_l = out_g = 0
        if self.l2l is not None:
            out_l = self.l2l(x_l)
        if self.g2l is not None:
            out_l = out_l + self.g2l(x_g)
        if self.l2g is not None:
            out_g = self.l2g(x_l)
        if self.g2g is not None:
            out_g = out_g + self.g2g(x_g)
        return out_l, (out_g if self.out_g else None)


class FFCBnAct(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, ratio_in: float, ratio_out: float, enable_lfu: bool = False):
        super().__init__()
        self.ffc = FFC(in_ch, out_ch, ratio_in, ratio_out, enable_lfu=enable_lfu)
        out_g = int(out_ch * ratio_out)
        self.bn_l = nn.BatchNorm2d(out_ch - out_g)
        self.bn_g = nn.BatchNorm2d(out_g) if out_g else None

    def forward(self, x_l, x_g):
        x_l, x_g = self.ffc(x_l, x_g)
        x_l = F.relu(self.bn_l(x_l))
        if x_g is not None:
            x_g = F.relu(self.bn_g(x_g))
        return x_l, x_g


class FFCResBlock(nn.Module):
    def __init__(self, ch: int, ratio: float, enable_lfu: bool = False):
        super().__init__()
        self.a = FFCBnAct(ch, ch, ratio, ratio, enable_lfu)
        self.b = FFCBnAct(ch, ch, ratio, ratio, enable_lfu)
        self.split = ch - int(ch * ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_l, x_g = x[:, : self.split], x[:, self.split :]
        y_l, y_g = self.b(*self.a(x_l, x_g))
        return x + torch.cat([y_l, y_g], dim=1)


class FFCInpainter(InpaintModel):
    """Masked RGB + mask (4 channels) -> RGB. Any size that is a multiple of ``size_multiple``."""

    def __init__(
        self,
        width: int = 32,
        downsamplings: int = 2,
        blocks: int = 6,
        global_ratio: float = 0.75,
        enable_lfu: bool = False,
        refine: bool = True,
        max_width: int = 512,
        prior: str = "diffusion",
        attention: bool = False,
    ):
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior '{prior}' (choose {', '.join(PRIORS)})")
        self.refine = refine
        self.prior = PRIORS[prior]() if refine else None
        self.size_multiple = 2 ** (downsamplings + (1 if enable_lfu else 0))

        def cbr(i, o, k, s, p, conv=nn.Conv2d):
            return [conv(i, o, k, stride=s, padding=p, bias=False), nn.BatchNorm2d(o), nn.ReLU(True)]

        layers = cbr(4, width, 7, 1, 3, ReflectConv2d)
        ch = width
        for _ in range(downsamplings):
            nxt = min(ch * 2, max_width)
            layers += cbr(ch, nxt, 3, 2, 1)
            ch = nxt
        self.down = nn.Sequential(*layers)
        self.blocks = nn.Sequential(*[FFCResBlock(ch, global_ratio, enable_lfu) for _ in range(blocks)])
        # Optional contextual attention at the lowest resolution; starts as the identity.
        self.attention = AttentionBlock(ch) if attention else None
        ups = []
        for _ in range(downsamplings):
            nxt = max(ch // 2, width)
            ups += [
                nn.ConvTranspose2d(ch, nxt, 3, stride=2, padding=1, output_padding=1, bias=False),
                nn.BatchNorm2d(nxt),
                nn.ReLU(True),
            ]
            ch = nxt
        self.up = nn.Sequential(*ups)
        self.head = ReflectConv2d(ch, 3, 7, padding=3)
        if refine:  # start as the identity on the classical fill
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def predict(self, masked: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.network(self.prior(masked, hole) if self.refine else masked, hole)

    def network(self, start: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """Everything after the prior: the learned part that refines ``start`` (the prior's fill)."""
        # Channels-last throughout (oneDNN runs the full-resolution convolutions about 2x faster on a
        # CPU in it; through the FFT blocks it is neutral in fp32 and about 4 % faster in bf16).
        x = self.down(torch.cat([start, hole], dim=1).contiguous(memory_format=torch.channels_last))
        x = self.blocks(x)
        if self.attention is not None:
            x = self.attention(x, hole)
        x = self.head(self.up(x.contiguous(memory_format=torch.channels_last))).contiguous()
        if self.refine:
            # A correction in logit space: zero output = the classical fill, and the result
            # stays in (0, 1) without clamping away gradients.
            return torch.sigmoid(torch.logit(start.clamp(1e-3, 1 - 1e-3)) + x)
        return torch.sigmoid(x)

    def for_inference(self) -> "FFCInpainter":
        fast = fold_batchnorm(copy.deepcopy(self).eval())
        if isinstance(fast.head, nn.Conv2d):
            fast.head = ColumnSumConv(fast.head)
        return fast


PRIORS = {"diffusion": DiffusionPrior}


PRESETS = {
    "ffc-tiny": dict(width=8, downsamplings=2, blocks=2, global_ratio=0.5),
    "ffc-small": dict(width=32, downsamplings=2, blocks=6, global_ratio=0.75),
    "ffc-base": dict(width=64, downsamplings=3, blocks=9, global_ratio=0.75),
}


def _factory(preset: str):
    def make(**overrides) -> FFCInpainter:
        return FFCInpainter(**{**PRESETS[preset], **overrides})

    make.__doc__ = f"FFC inpainter, preset {preset}: {PRESETS[preset]}"
    return make


for _name in PRESETS:
    register_model(_name)(_factory(_name))


# -- inference: batch norms folded into the convolutions before them, a faster head ---------------
class ColumnSumConv(nn.Module):
    """A k x k convolution with few output channels (the 3-channel head) computed as a k x 1
    convolution to out * k channels, one per kernel column, then a sum of those maps shifted by
    their column: the same arithmetic, but oneDNN vectorises a CPU convolution over output
    channels, so 3 outputs fill 3 of 16 lanes (the head took 50-70 ms of a 512 px fill); 21 fill
    them well. Padding goes along H before the convolution and along W after it (the k x 1
    convolution treats columns independently, so padding its output equals padding its input,
    and it has fewer channels). The output is float32: the column sums are not rounded to bf16
    under autocast.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        out_ch, in_ch, kh, kw = conv.weight.shape
        if (
            (conv.stride, conv.dilation, conv.groups) != ((1, 1), (1, 1), 1)
            or conv.padding != (kh // 2, kw // 2)
            or conv.padding_mode not in ("reflect", "zeros")
            or kh % 2 == 0
            or kw % 2 == 0
        ):
            raise ValueError(
                "ColumnSumConv takes a stride-1, odd-sized, 'same'-padded (reflect or zeros), ungrouped convolution"
            )
        self.out_ch, self.kh, self.kw, self.reflect = out_ch, kh, kw, conv.padding_mode == "reflect"
        # (o, j) -> one k x 1 kernel: column j of output channel o's kernel
        self.columns = nn.Conv2d(in_ch, out_ch * kw, (kh, 1), bias=False)
        self.columns.weight = nn.Parameter(conv.weight.detach().permute(0, 3, 1, 2).reshape(out_ch * kw, in_ch, kh, 1))
        self.bias = conv.bias

    def _pad(self, x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
        pad = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
        return reflect_pad(x, pad) if self.reflect else F.pad(x, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        z = self.columns(self._pad(x, self.kh // 2, -2))
        z = self._pad(z, self.kw // 2, -1).unflatten(1, (self.out_ch, self.kw))  # N, O, kw, H, W + kw - 1
        y = z[:, :, 0, :, :w].to(torch.float32, copy=True)
        for j in range(1, self.kw):
            y += z[:, :, j, :, j : j + w]
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def _bn_affine(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as y = scale * x + shift (per channel)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _scale_conv(conv: nn.Conv2d | nn.ConvTranspose2d, scale: torch.Tensor, shift: torch.Tensor | None) -> None:
    """conv <- scale * conv + shift, per output channel (weights changed in place)."""
    axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
    shape = [1] * conv.weight.dim()
    shape[axis] = -1
    conv.weight.mul_(scale.view(shape))
    if conv.bias is not None:
        conv.bias.mul_(scale)
    if shift is not None:
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros_like(shift))
        conv.bias.add_(shift)


@torch.no_grad()
def fold_batchnorm(model: FFCInpainter) -> FFCInpainter:
    """The same eval-mode network with every batch norm folded into the convolution(s) that feed
    it (equal up to float rounding): fewer passes over memory and no batch-norm outputs to hold,
    which a CPU fill at high resolution feels. For inference only: modifies ``model`` in place."""
    if model.training:
        raise ValueError("fold_batchnorm is for an eval-mode network (model.eval() first)")
    for seq in [model.down, model.up, *(m.squeeze for m in model.modules() if isinstance(m, SpectralTransform))]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(seq[i + 1], _BatchNorm):
                _scale_conv(seq[i], *_bn_affine(seq[i + 1]))
                seq[i + 1] = nn.Identity()
    for unit in [m for m in model.modules() if isinstance(m, FourierUnit) and isinstance(m.bn, _BatchNorm)]:
        _scale_conv(unit.conv, *_bn_affine(unit.bn))
        unit.bn = nn.Identity()
    for layer in [m for m in model.modules() if isinstance(m, FFCBnAct)]:
        ffc = layer.ffc
        # out_l = l2l(x_l) + g2l(x_g); out_g = l2g(x_l) + g2g(x_g), g2g ending in the 1x1 ``expand``
        for bn_name, convs in (("bn_l", [ffc.l2l, ffc.g2l]), ("bn_g", [ffc.l2g, ffc.g2g and ffc.g2g.expand])):
            bn = getattr(layer, bn_name)
            if not isinstance(bn, _BatchNorm):  # none there, or folded already
                continue
            scale, shift = _bn_affine(bn)
            convs = [c for c in convs if c is not None]
            for k, conv in enumerate(convs):
                _scale_conv(conv, scale, shift if k == 0 else None)
            setattr(layer, bn_name, nn.Identity())
    return model
