"""The CLI's contract: one line on stderr and a non-zero exit for every user error, never a traceback."""

import numpy as np
import pytest
from PIL import Image

from fillgap.checkpoint import export_weights, save_checkpoint
from fillgap.cli import main
from fillgap.models import create_model


@pytest.fixture
def files(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small_mask.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    model = create_model("ffc-tiny")
    export_weights(tmp_path / "tiny.safetensors", model)
    save_checkpoint(tmp_path / "tiny.pt", model)
    return tmp_path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_fill_writes_output_and_keeps_known_pixels(files, capsys):
    code, err = run(
        [
            "fill",
            files / "in.png",
            "--mask",
            files / "mask.png",
            "-o",
            files / "out.png",
            "--model",
            files / "tiny.safetensors",
        ],
        capsys,
    )
    assert code == 0, err
    out, src = np.asarray(Image.open(files / "out.png")), np.asarray(Image.open(files / "in.png"))
    keep = np.asarray(Image.open(files / "mask.png")) == 0
    assert np.array_equal(out[keep], src[keep])


def test_fill_accepts_a_training_checkpoint(files, capsys):
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "o.png", "--model", files / "tiny.pt"],
        capsys,
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "case,argv,fragments",
    [
        (
            "corrupt image",
            ["fill", "{d}/corrupt.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--model", "{d}/tiny.pt"],
            ["corrupt.png"],
        ),
        (
            "mask size",
            ["fill", "{d}/in.png", "-m", "{d}/small_mask.png", "-o", "{d}/o.png", "--model", "{d}/tiny.pt"],
            ["mask", "10x10", "48x40"],
        ),
        (
            "missing checkpoint",
            ["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--model", "{d}/no.pt"],
            ["checkpoint not found", "no.pt"],
        ),
        (
            "missing image",
            ["fill", "{d}/nothere.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--model", "{d}/tiny.pt"],
            ["not found", "nothere.png"],
        ),
        ("unknown model", ["train", "--model", "resnet-9000", "--out", "{d}/run"], ["unknown model 'resnet-9000'"]),
        (
            "output is input",
            ["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/in.png", "--model", "{d}/tiny.pt"],
            ["in.png"],
        ),
        (
            "output name too long",
            ["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/" + "a" * 300 + ".png", "--model", "mean-fill"],
            ["too long", "aaaa"],
        ),
        ("mask size too large", ["masks", "-o", "{d}/m", "--size", "100000"], ["--size", "16384"]),
    ],
)
def test_user_errors_are_one_line(files, capsys, case, argv, fragments):
    before = (files / "in.png").read_bytes()
    code, err = run([a.format(d=files) for a in argv], capsys)
    assert_one_line_error(code, err, *fragments)
    assert (files / "in.png").read_bytes() == before


@pytest.mark.parametrize(
    "argv,suggestion",
    [
        (["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--model", "opencv-tela"], "opencv-telea"),
        (
            ["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--model", "fillgap-netwrok"],
            "fillgap-network",
        ),
        (["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--strategy", "crpo"], "crop"),
        (["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--blend", "sfot"], "soft"),
        (["fill", "{d}/in.png", "-m", "{d}/mask.png", "-o", "{d}/o.png", "--runtime", "onxx"], "onnx"),
        (["masks", "-o", "{d}/m", "--kind", "thn"], "thin"),
        (["train", "--model", "ffc-smal", "--out", "{d}/run"], "ffc-small"),
    ],
)
def test_mistyped_names_get_a_suggestion(files, capsys, argv, suggestion):
    code, err = run([a.format(d=files) for a in argv], capsys)
    assert_one_line_error(code, err, f"(did you mean '{suggestion}'?)")
    assert not (files / "o.png").exists()


def test_a_name_like_nothing_gets_no_suggestion_and_fails_before_reading(files, capsys):
    # the picture is corrupt: the model's error comes first, so nothing was decoded
    code, err = run(
        ["fill", files / "corrupt.png", "-m", files / "mask.png", "-o", files / "o.png", "--model", "zzzz"], capsys
    )
    assert_one_line_error(code, err, "unknown model 'zzzz'")
    assert "did you mean" not in err


@pytest.mark.parametrize("name", ["ffc-base", "ffc-tiny", "seed-color-ae", "seed-mnist-ae"])
def test_an_untrained_architecture_is_not_a_fill_method(files, capsys, name):
    # the picture is corrupt: the name is refused first, before anything is read or loaded
    code, err = run(
        ["fill", files / "corrupt.png", "-m", files / "mask.png", "-o", files / "o.png", "--model", name], capsys
    )
    assert_one_line_error(code, err, f"'{name}' is a trainable architecture", f"fillgap train --model {name}")
    assert not (files / "o.png").exists()


def test_models_lists_the_architectures_apart(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    methods, architectures = out.split("Trainable architectures")
    assert "opencv-telea" in methods and "fillgap-network" in methods
    for name in ("ffc-base", "ffc-small", "ffc-tiny", "seed-color-ae", "seed-mnist-ae"):
        assert name not in methods and name in architectures


def test_a_greyscale_model_refuses_a_colour_picture(files, capsys):
    save_checkpoint(files / "digits.pt", create_model("seed-mnist-ae"))
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "o.png", "--model", files / "digits.pt"],
        capsys,
    )
    assert_one_line_error(code, err, "greyscale pictures only", "28x28", "in colour")
    assert not (files / "o.png").exists()
    grey = np.asarray(Image.open(files / "in.png").convert("L"))
    Image.fromarray(grey).save(files / "grey.png")
    code, err = run(
        ["fill", files / "grey.png", "-m", files / "mask.png", "-o", files / "o.png", "--model", files / "digits.pt"],
        capsys,
    )
    assert code == 0, err
    # a folder run fails the colour picture only
    imgs, masks = files / "imgs", files / "masks"
    imgs.mkdir(), masks.mkdir()
    for name in ("colour", "grey"):
        (imgs / f"{name}.png").write_bytes((files / ("in.png" if name == "colour" else "grey.png")).read_bytes())
        (masks / f"{name}.png").write_bytes((files / "mask.png").read_bytes())
    code, err = run(["fill", imgs, "--mask-dir", masks, "-o", files / "out", "--model", files / "digits.pt"], capsys)
    assert code == 3 and "greyscale pictures only" in err
    assert (files / "out" / "grey.png").exists() and not (files / "out" / "colour.png").exists()


def test_unknown_config_key_is_named(files, capsys):
    (files / "c.yaml").write_text("model: ffc-tiny\nlearning_rate: 0.1\n")
    code, err = run(["train", "--config", files / "c.yaml"], capsys)
    assert_one_line_error(code, err, "unknown config key 'learning_rate'")


def test_wrong_config_type_is_named(files, capsys):
    (files / "c.toml").write_text('model = "ffc-tiny"\nbatch_size = "lots"\n')
    code, err = run(["train", "--config", files / "c.toml"], capsys)
    assert_one_line_error(code, err, "batch_size")


def test_existing_output_is_not_overwritten_without_flag(files, capsys):
    (files / "out.png").write_bytes(b"precious")
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "out.png", "--model", files / "tiny.pt"],
        capsys,
    )
    assert_one_line_error(code, err, "exists", "--overwrite")
    assert (files / "out.png").read_bytes() == b"precious"
    code, _ = run(
        [
            "fill",
            files / "in.png",
            "-m",
            files / "mask.png",
            "-o",
            files / "out.png",
            "--model",
            files / "tiny.pt",
            "--overwrite",
        ],
        capsys,
    )
    assert code == 0


def test_checkpoint_of_another_architecture(files, capsys):
    save_checkpoint(files / "other.pt", create_model("seed-mnist-ae"))
    import torch

    ckpt = torch.load(files / "other.pt", weights_only=True)
    ckpt["model_name"] = "ffc-tiny"  # claims to be ffc-tiny, holds other weights
    torch.save(ckpt, files / "other.pt")
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "o.png", "--model", files / "other.pt"],
        capsys,
    )
    assert_one_line_error(code, err, "does not match model 'ffc-tiny'")


def test_folder_fill_never_writes_into_the_input_folder(files, capsys):
    imgs, masks = files / "imgs", files / "masks"
    imgs.mkdir(), masks.mkdir()
    (imgs / "a.png").write_bytes((files / "in.png").read_bytes())
    (masks / "a.png").write_bytes((files / "mask.png").read_bytes())
    code, err = run(["fill", imgs, "--mask-dir", masks, "-o", imgs, "--model", files / "tiny.pt"], capsys)
    assert_one_line_error(code, err, "input folder")
    code, err = run(["fill", imgs, "--mask-dir", masks, "-o", files / "outdir", "--model", files / "tiny.pt"], capsys)
    assert code == 0, err
    assert (files / "outdir" / "a.png").exists()


def test_masks_command_writes_pngs(tmp_path, capsys):
    assert main(["masks", "-o", str(tmp_path / "m"), "--kind", "thin", "--count", "3", "--size", "32"]) == 0
    assert len(list((tmp_path / "m").glob("*.png"))) == 3


def test_version(capsys):
    import fillgap

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fillgap {fillgap.__version__}"


def test_version_is_the_projects():
    import tomllib
    from pathlib import Path

    import fillgap

    root = Path(__file__).resolve().parents[1]
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"] == fillgap.__version__
    assert f"## {fillgap.__version__}" in (root / "CHANGELOG.md").read_text()


def _help(argv, capsys, monkeypatch, columns=80):
    monkeypatch.setenv("COLUMNS", str(columns))  # rich reads it when typer makes its console
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["fill"],
        ["train"],
        ["masks"],
        ["models"],
        ["eval"],
        ["serve"],
        ["export"],
        ["demo"],
        ["data"],
        ["data", "pack"],
    ],
    ids=" ".join,
)
def test_help_shows_no_type_tags(capsys, monkeypatch, command):
    import re

    out = _help([*command, "--help"], capsys, monkeypatch)
    assert not re.search(r"<(bool|str|path|int|float)", out), out


def test_fill_help_groups_its_options_and_keeps_sentences_whole(capsys, monkeypatch):
    out = _help(["fill", "--help"], capsys, monkeypatch, columns=300)
    lines = out.splitlines()
    panels = [line.strip("╭─╮ ").split(" ─")[0] for line in lines if line.startswith("╭")]
    assert panels == ["Arguments", "Options", "Mask", "Method and speed", "Folder runs", "Ray engine (--engine ray)"]
    # at 300 columns every paragraph of the description is one line: none is wrapped in the source
    assert any(
        line.strip().startswith("Pixels outside the hole come back identical")
        and line.rstrip().endswith("unless --format says otherwise.")
        for line in lines
    ), out
    mask_panel = out[out.index("╭─ Mask") : out.index("╭─ Method")]
    for option in ("--invert-mask", "--mask-threshold", "--force", "--dilate", "--blend", "--resize-mask"):
        assert option in mask_panel


def test_training_bar_counts_the_time_budget():
    """A run ended by max_minutes shows seconds of its budget, not thousands of steps (the demo)."""
    from fillgap.train.config import load_config
    from fillgap.train.trainer import _progress

    bar = _progress(load_config(None, {"epochs": 1000, "max_minutes": 1.0}), 8000, 0, True)  # on: tqdm counts
    assert bar.total == 60 and bar.unit == "s"
    bar.advance(12.5)
    assert bar.n == 12.5
    bar.advance(90)  # never past the budget
    assert bar.n == 60
    steps = _progress(load_config(None, {"epochs": 3}), 30, 5, True)
    assert steps.total == 30 and steps.n == 5


def test_demo_grid_has_column_labels():
    from fillgap.demo import _header

    strip = _header(["input", "mask", "tiny model (1 min)", "original"], 96)
    assert strip.shape == (28, 4 * 96, 3)
    for i in range(4):  # dark text in every column, on white
        column = strip[:, i * 96 : (i + 1) * 96]
        assert (column < 100).any() and (column == 255).mean() > 0.6


def test_demo_fills_the_held_out_photos_with_the_shipped_model(tmp_path, capsys):
    """`fillgap demo` shows the shipped model at work (a small cell keeps the test fast), not a
    freshly trained tiny model."""
    from fillgap.data import bundled_photos
    from fillgap.demo import demo_inputs, run_demo

    lines = []
    path = run_demo(tmp_path, methods=("fillgap-network", "opencv-telea"), cell=(96, 128), echo=lines.append)
    grid = np.asarray(Image.open(path))
    n = len(bundled_photos("test"))
    assert grid.shape == (28 + 96 * n, 128 * 4, 3)  # header; input, two methods, original
    for i, (img, mask) in enumerate(demo_inputs(96, 128)):
        row = grid[28 + 96 * i : 28 + 96 * (i + 1)]
        hole = mask > 0
        for col in (1, 2):  # filled: the original outside the hole, no white left inside it
            cell = row[:, 128 * col : 128 * (col + 1)]
            assert np.array_equal(cell[~hole], img[~hole])
            assert (cell[hole] != 255).any(axis=-1).mean() > 0.9
    assert [line.split()[0] for line in lines[:2]] == ["fillgap-network", "opencv-telea"]
    assert all("s per photo" in line and "hole PSNR" in line for line in lines[:2])


def test_demo_trains_only_when_asked(tmp_path, capsys, monkeypatch):
    import fillgap.demo as demo

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda out, echo: calls.append("fill") or tmp_path / "g.png")
    monkeypatch.setattr(
        demo, "run_training_demo", lambda out, seconds: calls.append(("train", seconds)) or tmp_path / "t.png"
    )
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert main(["demo", "--train", "--seconds", "5", "--out", str(tmp_path)]) == 0
    assert calls == ["fill", ("train", 5.0)]


@pytest.mark.parametrize(
    "extra,fragment",
    [(["--format", "jpg"], "--format is for a folder"), (["--mask-dir", "."], "--mask-dir is for a folder")],
)
def test_folder_options_on_a_single_picture_are_refused(files, capsys, extra, fragment):
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "o.png", "--model", "mean-fill", *extra],
        capsys,
    )
    assert_one_line_error(code, err, fragment)
    assert not (files / "o.png").exists()


def test_an_existing_folder_as_the_output_of_a_picture_is_named_as_such(files, capsys):
    (files / "outdir").mkdir()
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "outdir", "--model", "mean-fill"], capsys
    )
    assert_one_line_error(code, err, "output is a folder")


def test_shipped_names_load_and_16_bit_masks_scale():
    import fillgap
    from fillgap.fill import as_mask

    assert fillgap.load_model("fillgap-smooth") is not None
    assert as_mask(np.array([[0, 65535, 32768]], np.uint16))[0].tolist() == pytest.approx([0.0, 1.0, 0.5], abs=1e-4)


def test_a_jpeg_mask_is_filled_with_a_warning(files, capsys):
    Image.open(files / "mask.png").save(files / "mask.jpg", quality=75)
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.jpg", "-o", files / "o.png", "--model", "mean-fill"], capsys
    )
    assert code == 0 and (files / "o.png").exists()
    assert err.count("\n") == 1 and "warning: mask.jpg is a JPEG" in err and "PNG" in err


def test_deterministic_fills_the_same_bytes_whatever_the_thread_count(files, capsys, monkeypatch):
    """--deterministic: one thread and fp32, so neither the load-dependent thread count nor bf16
    can move a pixel (without it the shipped model differed by 1/255 in about 1 % of hole values
    between 1 and 2 threads on a bf16 CPU)."""
    import cv2
    import torch

    from fillgap.data import bundled_photos

    photo = np.ascontiguousarray(bundled_photos("test")[0][:128, :160])
    Image.fromarray(photo).save(files / "photo.png")
    hole = np.zeros(photo.shape[:2], np.uint8)
    hole[30:90, 40:120] = 255
    Image.fromarray(hole).save(files / "hole.png")
    before, outs = (torch.get_num_threads(), cv2.getNumThreads()), []
    try:
        for n in ("1", "2"):
            monkeypatch.setenv("FILLGAP_THREADS", n)
            out = files / f"det{n}.png"
            code, err = run(
                ["fill", files / "photo.png", "--mask", files / "hole.png", "-o", out, "--deterministic"], capsys
            )
            assert code == 0, err
            assert torch.get_num_threads() == 1
            outs.append(out.read_bytes())
        code, err = run(
            [
                "fill",
                files / "photo.png",
                "--mask",
                files / "hole.png",
                "-o",
                files / "x.png",
                "--deterministic",
                "--threads",
                "2",
            ],
            capsys,
        )
        assert_one_line_error(code, err, "--deterministic", "--threads")
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    assert outs[0] == outs[1]
