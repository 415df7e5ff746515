"""What a photo's pixels carry besides the scene: sensor grain and JPEG blocking.

A fill can have the right colours, shading and texture and still be spotted at a close look: a
network (and a patch vote) averages a sky's noise away, and leaves none of the 8 x 8 blocks a
JPEG camera picture has. Judges who enlarge and contrast-stretch a pair find the fill as the
patch that is cleaner than the photo. ``add_grain`` gives the hole back both:

- **Grain.** Where the fill has less energy above a blur of ``sigma`` than its known surroundings
  (expected energy: a normalised blur of the log band energy of known pixels clear of the hole,
  so one edge nearby does not count as grain, and at most the smoother half of the known tiles'
  mean energy, the region's noise floor), noise tops it up to that level, at most ``max`` RMS
  (a grain, not a texture: copies bring texture). The noise copies the smoother half of the
  known tiles: their colour covariance, and the spectrum of each of its principal components (a
  photo's colour noise is coarser than its grey noise: chroma subsampling, demosaicing), with
  random phase, so nothing is stamped.
- **JPEG blocking.** Where the known region shows the 8 x 8 grid of a JPEG (its pixel steps at
  one phase of 8 stand out on both axes), the quantisation step of each of the 64 luma DCT
  frequencies is read from the known blocks' coefficients (they sit on multiples of it: the
  histogram-periodicity idea of JPEG forensics), and the
  blocks wholly inside the hole are quantised with the same steps, so the fill has the photo's
  blocks (blocks the rim crosses are left alone). Only luma: the chroma grid (16 px,
  subsampled) is left alone.

Run at the picture's own resolution (the pipeline calls it from ``FillMethod.finish``): grain
added at a working size and scaled up comes out coarse, and a JPEG grid exists only at full size.
Pure torch; deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .filters import dilate, gaussian_blur, known_mean, luma_of


@dataclass(frozen=True)
class GrainSettings:
    sigma: float = 4.0  # grain: the band above a blur of this sigma (0: no grain) ...
    tile: int = 32  # ... its spectrum measured on known tiles of this side ...
    max: float = 5 / 255  # ... and its added RMS at most this
    jpeg: bool = True  # quantise the hole's 8 x 8 luma blocks as the photo's, where it has them
    jpeg_contrast: float = 1.1  # grid found: steps at its phase this much above the others, both axes
    noise_cap: float = 0.0  # grain RMS at most this x the photo's sensor noise (``_sensor_noise``; 0: no cap)
    seed: int = 0


DEFAULT_GRAIN = GrainSettings()


def add_grain(
    image: torch.Tensor, hole: torch.Tensor, filled: torch.Tensor, settings: GrainSettings = DEFAULT_GRAIN
) -> torch.Tensor:
    """``filled`` with the photo's grain (and JPEG blocks) in the hole. ``image``: N x 3 x H x W,
    uint8 or floats in [0, 1] (its known pixels are the photo); ``hole`` N x 1 x H x W;
    ``filled``: floats (changed in place and returned), or uint8 with the fill written over the
    hole (rounded back in place). Works in chunks of at most ``CHUNK`` px of the hole's bounding
    box, each with ``2 * tile`` pixels of context: a big window costs what its hole costs, and
    strokes across a 12 MP picture never make a full-size float copy (noise is independent from
    chunk to chunk anyway; chunks start on the 8 px grid, so JPEG blocks stay whole)."""
    if settings.sigma <= 0 and not settings.jpeg:
        return filled
    margin = 2 * settings.tile
    h, w = hole.shape[-2:]
    for i in range(filled.shape[0]):
        where = (hole[i, 0] > 0).nonzero()
        if where.numel() == 0:
            continue
        (top, left), (bottom, right) = where.min(0).values.tolist(), where.max(0).values.tolist()
        for cy in range(top - top % 8, bottom + 1, CHUNK):
            for cx in range(left - left % 8, right + 1, CHUNK):
                core = (slice(cy, min(h, cy + CHUNK)), slice(cx, min(w, cx + CHUNK)))
                if not bool((hole[i, 0][core] > 0).any()):
                    continue
                y0, x0, y1, x1 = (
                    max(0, cy - margin),
                    max(0, cx - margin),
                    min(h, cy + CHUNK + margin),
                    min(w, cx + CHUNK + margin),
                )
                _finish_box(image[i], hole[i, 0], filled[i], (y0, x0, y1, x1), core, settings)
    return filled


CHUNK = 512  # add_grain's largest piece (a multiple of 8)


def _finish_box(image, hole, filled, box, core, settings: GrainSettings) -> None:
    """Grain and JPEG blocks for the box (y0, x0, y1, x1) of one picture; the hole pixels of
    ``core`` (slices, inside the box) are written into ``filled``."""
    y0, x0, y1, x1 = box
    region = (slice(y0, y1), slice(x0, x1))
    part = hole[region] > 0
    known, fill = image[(slice(None), *region)], filled[(slice(None), *region)]
    if known.dtype == torch.uint8:
        known = known.float() / 255
    picture = torch.where(part, fill.float() / 255 if fill.dtype == torch.uint8 else fill, known).float()
    if settings.sigma > 0:
        picture = _grain(picture, part, settings, torch.Generator().manual_seed(settings.seed))
    if settings.jpeg:
        picture = _match_jpeg(picture, part, settings)
    if filled.dtype == torch.uint8:
        picture = picture.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    inner = (slice(core[0].start - y0, core[0].stop - y0), slice(core[1].start - x0, core[1].stop - x0))
    write = part[inner]
    target = filled[(slice(None), *core)]
    target[:, write] = picture[(slice(None), *inner)][:, write].to(filled.dtype)


# -- grain ---------------------------------------------------------------------------------------
def _grain(picture: torch.Tensor, hole: torch.Tensor, s: GrainSettings, gen: torch.Generator) -> torch.Tensor:
    """``picture`` (filled) with noise added in the hole (see the module doc). Val 256 px crops with
    the texture stage: detail ratio 0.79 -> 0.91 for -0.12 dB hole PSNR."""
    c, h, w = picture.shape
    band = picture - gaussian_blur(picture, s.sigma)
    energy = gaussian_blur(band.pow(2).mean(0, keepdim=True), 2.0)[0]
    clear = ~dilate(hole, int(2 * s.sigma) + 2)  # known, and its band untouched by the fill
    tiles = _clear_tiles(band, clear, s.tile, gen)
    if tiles is None:
        return picture
    tile = tiles.shape[-1]
    tile_energy = tiles.pow(2).mean((1, 2, 3))
    tiles = tiles[tile_energy <= tile_energy.median()]
    cov = torch.einsum("nchw,nkhw->ck", tiles, tiles) / (tiles.shape[0] * tile * tile)
    if float(torch.trace(cov)) < 1e-10:  # flat surroundings (clipped white, a synthetic picture)
        return picture
    # expected band energy in the hole (geometric mean of the known pixels nearby, else of all)
    log_energy = torch.log(energy.clamp(min=1e-10))[None]
    expect = known_mean(log_energy, clear.float()[None], 2 * s.sigma, max(h, w) / 4, 0.05)[0]
    # at most the smoothest quarter of the tiles' energy: near edges and defocused blobs the band
    # holds structure, not noise
    floor = float(tile_energy.quantile(0.25))
    if s.noise_cap > 0:  # and at most what the photo's own sensor noise says (a motion blur's streaks are not noise)
        floor = min(floor, (s.noise_cap * _sensor_noise(picture, clear)) ** 2)
    expect = expect.exp().clamp(max=min(s.max**2, floor))
    deficit = (expect - energy).clamp(min=0) * hole
    # noise per principal colour component: white, shaped by that component's amplitude spectrum
    values, vectors = torch.linalg.eigh(cov)
    components = torch.einsum("ck,nchw->nkhw", vectors, tiles)
    window = torch.hann_window(tile, periodic=False)
    spectra = torch.fft.fft2(components * (window[:, None] * window[None])).abs().pow(2).mean(0).sqrt()
    spectra = F.interpolate(torch.fft.fftshift(spectra, dim=(-2, -1))[None], size=(h, w), mode="bilinear")[0]
    white = torch.fft.fft2(torch.randn(c, h, w, generator=gen))
    shaped = torch.fft.ifft2(white * torch.fft.ifftshift(spectra, dim=(-2, -1))).real
    shaped = shaped / shaped.pow(2).mean((1, 2), keepdim=True).sqrt().clamp(min=1e-12)
    shaped = shaped * values.clamp(min=0).sqrt()[:, None, None]
    noise = torch.einsum("ck,khw->chw", vectors, shaped) / (torch.trace(cov) / c).sqrt()  # mean energy 1
    return torch.where(hole, (picture + noise * deficit.sqrt()).clamp(0, 1), picture)


def _sensor_noise(picture: torch.Tensor, clear: torch.Tensor) -> float:
    """The standard deviation of the picture's pixel noise over the ``clear`` pixels: the median
    absolute 2 x 2 diagonal difference / 0.6745 (Donoho's robust estimate; edges and shading are
    sparse in that band, noise is everywhere in it)."""
    d = (picture[:, :-1, :-1] - picture[:, 1:, :-1] - picture[:, :-1, 1:] + picture[:, 1:, 1:]) / 2
    both = clear[:-1, :-1] & clear[1:, :-1] & clear[:-1, 1:] & clear[1:, 1:]
    if not both.any():
        return float("inf")
    return float(d[:, both].abs().median()) / 0.6745


def _clear_tiles(band: torch.Tensor, clear: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor | None:
    """n x c x t x t: up to 256 tiles of ``band`` lying wholly in ``clear`` (at half-tile steps), of
    side ``side``, else 1/2 or 1/4 of it where no tile that large fits; None if none fits at all."""
    side = min(side, 1 << (min(clear.shape).bit_length() - 1))  # fits the picture
    while side >= 16:
        step = side // 2
        free = F.avg_pool2d(clear[None, None].float(), side, stride=step)[0, 0] >= 1
        where = free.reshape(-1).nonzero()[:, 0]
        if where.numel():
            where = where[torch.randperm(where.numel(), generator=gen)[:256]]
            ys, xs = (where // free.shape[1]) * step, (where % free.shape[1]) * step
            return torch.stack([band[:, y : y + side, x : x + side] for y, x in zip(ys.tolist(), xs.tolist())])
        side //= 2
    return None


# -- JPEG blocks ---------------------------------------------------------------------------------


def _dct_matrix() -> torch.Tensor:
    """8 x 8 orthonormal DCT-II (JPEG's transform)."""
    k, n = torch.arange(8.0)[:, None], torch.arange(8.0)[None]
    m = torch.cos(math.pi * (2 * n + 1) * k / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


def jpeg_grid(luma: torch.Tensor, known: torch.Tensor, contrast: float = 1.1) -> tuple[int, int] | None:
    """The (row, column) phase of an 8 x 8 JPEG grid in ``luma`` (H x W, 0-255), judged on pixel
    steps between two ``known`` pixels: the mean step across one phase of 8 must exceed the
    median phase's by ``contrast`` on both axes; None where it does not (a PNG, a resized JPEG)."""
    phases = []
    for axis in (0, 1):
        step = luma.diff(dim=axis).abs()
        both = known.narrow(axis, 0, known.shape[axis] - 1) & known.narrow(axis, 1, known.shape[axis] - 1)
        index = torch.arange(step.shape[axis]) % 8
        index = index[:, None].expand_as(step) if axis == 0 else index[None].expand_as(step)
        total = torch.zeros(8).index_add_(0, index[both], step[both])
        count = torch.zeros(8).index_add_(0, index[both], torch.ones(int(both.sum())))
        if bool((count < 64).any()):
            return None
        mean = total / count
        if float(mean.max()) < contrast * float(mean.median()):
            return None
        phases.append((int(mean.argmax()) + 1) % 8)  # a step after pixel p: a block starts at p + 1
    return phases[0], phases[1]


def _blocks(luma: torch.Tensor, top: int, left: int) -> tuple[torch.Tensor, int, int]:
    """The whole 8 x 8 blocks of ``luma`` from (top, left): nb x nw x 8 x 8, and their counts."""
    h, w = (luma.shape[0] - top) // 8, (luma.shape[1] - left) // 8
    grid = luma[top : top + 8 * h, left : left + 8 * w]
    return grid.reshape(h, 8, w, 8).permute(0, 2, 1, 3), h, w


def quant_steps(coefficients: torch.Tensor) -> torch.Tensor:
    """64 quantisation steps read from n x 64 DCT coefficients of decoded JPEG blocks: per
    frequency, the largest step whose multiples the non-zero coefficients sit on (mean distance to
    the nearest multiple at most 0.6: the decoder's integer transform and rounding to 8 bits move
    them by 0.3-0.5, a step one too large misses by 1 or more; and at most 1.3 x the smallest of
    them, else it would put them on zero); inf where (nearly) every coefficient is zero (the
    fill's are set to zero there too), 1 where no step fits."""
    candidates = torch.arange(1, 121, dtype=torch.float32)
    steps = torch.ones(coefficients.shape[1])
    for k in range(coefficients.shape[1]):
        c = coefficients[:, k]
        c = c[c.abs() >= 1.5]  # below: zeros moved by the decoder's rounding
        if c.numel() < max(8, 0.02 * coefficients.shape[0]):
            steps[k] = float("inf")
            continue
        # a step above the smallest non-zero coefficients would put them on zero
        top = 1.3 * float(torch.quantile(c.abs(), 0.05))
        off = (c[None] - candidates[:, None] * torch.round(c[None] / candidates[:, None])).abs().mean(1)
        fits = (off <= 0.6) & (candidates <= top)
        steps[k] = candidates[int(fits.nonzero().max())] if fits.any() else 1.0
    return steps


def _match_jpeg(picture: torch.Tensor, hole: torch.Tensor, s: GrainSettings) -> torch.Tensor:
    """``picture`` with the hole's 8 x 8 luma blocks quantised as the photo's (see the module doc)."""
    luma = luma_of(picture)[0] * 255
    grid = jpeg_grid(luma, ~hole, s.jpeg_contrast)
    if grid is None:
        return picture
    blocks, bh, bw = _blocks(luma, *grid)
    holes, _, _ = _blocks(hole.float(), *grid)
    if bh == 0 or bw == 0:
        return picture
    known = holes.amax((-2, -1)) == 0
    # Only blocks wholly in the hole are quantised: in a block the rim crosses, the quantisation's
    # error lands on the hole's few pixels next to the step between fill and photo, a line along
    # the rim (+2-4 levels on a 2560 px defocused background; alternating with the photo's pixels
    # to a block that is both made it worse).
    holes = holes.amin((-2, -1)) > 0
    d = _dct_matrix()
    coefficients = d @ (blocks - 128) @ d.T
    if int(known.sum()) < 16:
        return picture
    steps = quant_steps(coefficients[known].reshape(-1, 64)).reshape(8, 8)
    hole_coefficients = coefficients[holes]
    quantised = torch.where(steps.isinf(), 0.0, torch.round(hole_coefficients / steps) * steps)
    new = torch.zeros_like(blocks)
    new[holes] = d.T @ quantised @ d + 128
    delta = torch.zeros_like(luma)
    region = delta[grid[0] : grid[0] + 8 * bh, grid[1] : grid[1] + 8 * bw]
    change = (new - blocks) * holes[..., None, None]
    region.copy_(change.permute(0, 2, 1, 3).reshape(8 * bh, 8 * bw))
    # the luma change on all three channels leaves the chroma (Cb, Cr) as it was
    out = picture + (delta / 255)[None]
    return torch.where(hole, out.clamp(0, 1), picture)
