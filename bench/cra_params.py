"""Settings of ``aggregate_residual`` (contextual residual aggregation) on real photos.

For 6 prepared photos at 2560 px wide and two holes each (a 5 % ellipse, 6 thick 40 px
strokes), the coarse fill is OpenCV Telea at 512 px; each row gives hole detail ratio (std of
the 3x3 Laplacian of grey inside the hole, fill / original) / hole PSNR (dB) for plain
upsampling ("resize") and for aggregate_residual with the defaults and a few settings.
Needs ``fillgap data prepare --sets photos``. Prints the table (copy it into
bench/results/cra-params.md with ``cat /proc/loadavg``):

    python bench/cra_params.py
"""

import cv2
import numpy as np
import time
import torch
import torch.nn.functional as F
from PIL import Image

from fillgap.methods import classical
from fillgap.data.photos import data_root
from fillgap.fill.cra import aggregate_residual

Image.MAX_IMAGE_PIXELS = None
torch.set_num_threads(1)
PHOTOS = ["picosdeeuropa_by_Aitzol_Berasategi", "Picture_0B_by_freespace", "Garden", "Dune", "Aqua", "LadyBird"]
VARIANTS = [
    dict(),
    dict(topk=1),
    dict(topk=2),
    dict(scale=300.0),
    dict(grid=128),
    dict(grid=128, topk=1),
    dict(grid=32),
]


def lap_std(img, m):
    k = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]]).float()[None, None]
    return F.conv2d(img.mean(1, keepdim=True), k, padding=1)[m > 0].std()


def cases():
    for name in PHOTOS:
        a = np.asarray(Image.open(data_root() / "photos" / f"{name}.png").convert("RGB"))
        a = cv2.resize(a, (2560, int(a.shape[0] * 2560 / a.shape[1])), interpolation=cv2.INTER_AREA)
        H, W = a.shape[:2]
        for kind in ["blob", "strokes"]:
            m = np.zeros((H, W), np.uint8)
            if kind == "blob":
                cv2.ellipse(m, (W // 2, H // 2), (W // 9, H // 7), 20, 0, 360, 1, -1)
            else:
                g = np.random.default_rng(0)
                for _ in range(6):
                    p = g.integers([0, 0], [W, H], size=(4, 2))
                    cv2.polylines(m, [p.astype(np.int32)], False, 1, 40)
            img = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
            hole = torch.from_numpy(m)[None, None].float()
            h, w = round(H * 512 / W), 512
            small = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
            ms = cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) > 0
            coarse = torch.from_numpy(classical.telea(small, ms)).permute(2, 0, 1)[None].float() / 255
            yield name, kind, img, hole, coarse


def main():
    rows = {}
    for name, kind, img, hole, coarse in cases():
        up = F.interpolate(coarse, size=img.shape[-2:], mode="bilinear", align_corners=False)
        plain = torch.where(hole > 0, up, img)

        def psnr(x):
            return (-10 * torch.log10(((x - img)[hole.expand_as(img) > 0] ** 2).mean())).item()

        b = lap_std(img, hole)
        line = [f"{name[:12]:12s} {kind:7s} h{hole.mean():.3f} resize {lap_std(plain, hole) / b:.2f}/{psnr(plain):.2f}"]
        for v in VARIANTS:
            t = time.time()
            out = aggregate_residual(img, hole, coarse, **v)
            t = time.time() - t
            r, p = (lap_std(out, hole) / b).item(), psnr(out)
            rows.setdefault(str(v), []).append((r, p - psnr(plain), t))
            line.append(f"{r:.2f}/{p:.2f}")
        print(" | ".join(line), flush=True)
    for k, v in rows.items():
        v = np.array(v)
        print(
            f"{k:30s} ratio mean {v[:, 0].mean():.2f} min {v[:, 0].min():.2f}  dPSNR mean {v[:, 1].mean():+.2f} "
            f"min {v[:, 1].min():+.2f}  t {v[:, 2].mean():.2f}s"
        )


if __name__ == "__main__":
    main()
