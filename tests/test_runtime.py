"""Runtime: the DFT-by-matmul Fourier unit, ONNX export and onnxruntime, the one thread policy."""

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap.checkpoint import export_weights
from fillgap.cli import main
from fillgap.errors import FillgapError
from fillgap.models import InpaintModel, create_model
from fillgap.models.ffc import FourierUnit, irfft2_matmul, rfft2_matmul
from fillgap.runtime import threads as rt


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# -- DFT by matrix products == FFT
@pytest.mark.parametrize("h,w", [(16, 16), (7, 9), (12, 5), (1, 1), (2, 3), (33, 64)])
def test_dft_matmul_equals_fft(h, w):
    g = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(2, 3, h, w, generator=g)
    spec = torch.fft.rfft2(x, norm="ortho")
    re, im = rfft2_matmul(x)
    assert torch.allclose(re, spec.real, atol=1e-5) and torch.allclose(im, spec.imag, atol=1e-5)
    # the inverse on an arbitrary (not Hermitian-consistent) half spectrum, as the unit feeds it
    yr, yi = torch.randn(2, 3, h, w // 2 + 1, generator=g), torch.randn(2, 3, h, w // 2 + 1, generator=g)
    ref = torch.fft.irfft2(torch.complex(yr, yi), s=(h, w), norm="ortho")
    assert torch.allclose(irfft2_matmul(yr, yi, w), ref, atol=1e-5)


def test_fourier_unit_variants_agree():
    torch.manual_seed(0)
    unit = FourierUnit(4, 4).eval()
    unit.bn.running_mean.uniform_(-0.5, 0.5)  # not the identity batch norm: the test can fail
    x = torch.randn(1, 4, 20, 14)
    with torch.no_grad():
        fft = unit(x)
        unit.matmul_dft = True
        mm = unit(x)
    assert fft.abs().max() > 0.1
    assert torch.allclose(fft, mm, atol=1e-5)


# -- torch-bf16: the same network with bfloat16 convolutions
def test_bf16_runtime_fills_close_to_fp32_and_really_uses_bf16():
    from fillgap.data import bundled_photos
    from fillgap.fill import inpaint
    from fillgap.masks import MaskGenerator
    from fillgap.methods import get_method

    torch.manual_seed(0)
    net = create_model("ffc-tiny").eval()
    torch.nn.init.normal_(net.head.weight, std=0.05)  # not the identity on the prior: the test can fail
    fast, plain = get_method(net, "torch-bf16"), get_method(net, "torch")
    seen = []  # the dtypes the convolutions computed in
    for mod in [*fast.model.modules(), *plain.model.modules()]:
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    img = next(iter(bundled_photos("test")))[:64, :80].copy()
    mask = MaskGenerator("box", seed=3)(64, 80, 0, 0)
    got = inpaint(img, mask, fast)
    assert torch.bfloat16 in seen
    seen.clear()
    ref = inpaint(img, mask, plain)
    assert torch.bfloat16 not in seen
    hole = mask > 0
    assert (ref[hole] != img[hole]).any() and np.array_equal(got[~hole], img[~hole])
    diff = np.abs(got.astype(int) - ref.astype(int))[hole]
    assert diff.max() <= 3 and diff.mean() < 0.5


def test_auto_runtime_is_the_default_and_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    from fillgap import methods

    net = create_model("ffc-tiny")
    assert methods.get_method(net).bf16 is None  # "auto" is the default: decided per call
    for flags, expected in (("fpu avx512f avx512_bf16 sse", True), ("fpu avx512f sse", False)):
        methods.native_bf16.cache_clear()
        monkeypatch.setattr(methods.Path, "read_text", lambda self, *a, **k: f"flags\t\t: {flags}\n")
        auto, seen = methods.get_method(net, "auto"), []
        auto.model.down[0].register_forward_hook(lambda mod, args, out: seen.append(out.dtype))  # a convolution
        auto.fill(torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16))
        assert (seen == [torch.bfloat16]) is expected
        assert methods.get_method(net, "torch").bf16 is False
    methods.native_bf16.cache_clear()


# -- ONNX export and onnxruntime (one export for the module: the exporter takes tens of seconds)
def _tiny_net() -> InpaintModel:
    """ffc-tiny without the prior (the exporter's time grows with the op count; the prior's many
    small sweeps take minutes to trace on a busy machine); its head is random, so not the identity."""
    torch.manual_seed(0)
    return create_model("ffc-tiny", refine=False).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    d = tmp_path_factory.mktemp("onnx")
    net = _tiny_net()
    export_weights(d / "tiny.safetensors", net)
    # The real command, in its own process (the exporter's tracing state stays out of this one).
    src = Path(__file__).resolve().parents[1] / "src"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fillgap",
            "export",
            "--onnx",
            str(d / "tiny.onnx"),
            "--model",
            str(d / "tiny.safetensors"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "max difference" in proc.stdout
    (d / "export-stdout.txt").write_text(proc.stdout)
    (d / "export-stderr.txt").write_text(proc.stderr)
    return d, net


def test_export_says_before_it_starts_how_long_it_takes(exported):
    """The exporter is silent for a minute or more: a notice with the expected seconds comes first
    (stderr: a log gets it too), and the result line says how long it took."""
    from fillgap.runtime.onnx import EXPORT_SECONDS_HINT

    err = (exported[0] / "export-stderr.txt").read_text().splitlines()
    assert len(err) == 1 and err[0].startswith("fillgap: exporting") and "to ONNX" in err[0], err
    assert f"about {EXPORT_SECONDS_HINT} s" in err[0]  # stderr is no terminal here: no seconds ticking
    out = (exported[0] / "export-stdout.txt").read_text()
    assert re.search(r"wrote .*tiny\.onnx \(.*\) in \d+ s", out), out


def test_export_steps_count_seconds_on_a_terminal(monkeypatch):
    from fillgap.runtime import onnx as ro

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, log = Terminal(), io.StringIO()
    with ro._elapsed("fillgap: tracing...", tty):
        time.sleep(1.3)
    with ro._elapsed("fillgap: tracing...", log):
        pass
    assert re.search(r"\rfillgap: tracing\.\.\. 1 s", tty.getvalue()) and tty.getvalue().endswith(" s\n")
    assert log.getvalue() == ""  # no carriage returns in a log file


def test_export_round_trip_dynamic_size(exported):
    from fillgap.runtime.onnx import OnnxSession

    d, net = exported
    session = OnnxSession(d / "tiny.onnx", threads=1)
    assert (session.name, session.channels, session.size_multiple) == ("ffc-tiny", 3, 4)
    for h, w in [(64, 64), (40, 92), (8, 8)]:  # other than the traced size, non-square, the smallest
        g = torch.Generator().manual_seed(h + w)
        x, m = torch.rand(1, 3, h, w, generator=g), (torch.rand(1, 1, h, w, generator=g) > 0.6).float()
        with torch.no_grad():
            ref = net(x, m)
        got = session.run(x, m)
        assert got.shape == ref.shape
        assert (got - ref).abs().max() < 1e-4


def test_export_refuses_to_overwrite(exported, capsys):
    d, _ = exported
    before = (d / "tiny.onnx").stat().st_mtime_ns
    code = main(["export", "--onnx", str(d / "tiny.onnx"), "--model", str(d / "tiny.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and "already exists" in err and "Traceback" not in err
    assert (d / "tiny.onnx").stat().st_mtime_ns == before


def test_onnx_fill_matches_torch_fill_on_bundled_photos(exported):
    """The whole pipeline (windows, padding, composite) with the network in onnxruntime vs torch."""
    from fillgap.data import bundled_photos
    from fillgap.fill import inpaint
    from fillgap.masks import MaskGenerator
    from fillgap.methods import get_method

    d, net = exported
    onnx_method = get_method(d / "tiny.onnx")
    assert onnx_method.name == "ffc-tiny" and type(onnx_method).__name__ == "OnnxNetwork"
    for i, photo in zip(range(3), bundled_photos("test")):  # the 3 shipped test photos
        img = photo[:90, :118].copy()  # not a multiple of 4: the padding path too
        mask = MaskGenerator("box", seed=i)(90, 118, 0, 0)
        ref = inpaint(img, mask, get_method(net, "torch"))  # fp32, as the exported graph
        got = inpaint(img, mask, onnx_method)
        hole = mask > 0
        assert (ref[hole] != img[hole]).any()  # the fill did something
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1  # within 1/255
        assert np.array_equal(got[~hole], img[~hole])


def test_fill_cli_runtime_onnx(exported, tiny_files, capsys):
    d, _ = exported
    out = tiny_files / "onnx-out.png"
    code = main(
        [
            "fill",
            str(tiny_files / "in.png"),
            "--mask",
            str(tiny_files / "mask.png"),
            "-o",
            str(out),
            "--model",
            str(d / "tiny.onnx"),
            "--runtime",
            "onnx",
            "--threads",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert out.exists()
    code = main(
        [
            "fill",
            str(tiny_files / "in.png"),
            "--mask",
            str(tiny_files / "mask.png"),
            "-o",
            str(out),
            "--runtime",
            "tensorrt",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "unknown runtime 'tensorrt'" in err and "Traceback" not in err


def test_onnx_runtime_exports_a_checkpoint_once(exported, monkeypatch, tmp_path, capsys):
    """``--runtime onnx`` with a torch checkpoint: exported into the cache once, then reused."""
    from fillgap.methods import get_method
    from fillgap.runtime import onnx as ro

    monkeypatch.setenv("FILLGAP_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_export(model, path, **kwargs):  # the real exporter is covered above; here: the caching
        calls.append(path)
        Path(path).write_bytes((exported[0] / "tiny.onnx").read_bytes())

    export_weights(tmp_path / "w.safetensors", create_model("ffc-tiny"))
    monkeypatch.setattr(ro, "export_onnx", fake_export)
    capsys.readouterr()
    first = get_method(tmp_path / "w.safetensors", runtime="onnx")
    notice = capsys.readouterr().err.splitlines()
    second = get_method(tmp_path / "w.safetensors", runtime="onnx")
    assert len(calls) == 1 and first.path == second.path == calls[0]
    assert first.path.parent == tmp_path / "cache" / "onnx"
    # the first use says why it waits, in one line; the cached export is used silently
    assert len(notice) == 1 and notice[0].startswith("fillgap: exporting w.safetensors to ONNX once"), notice
    assert str(tmp_path / "cache" / "onnx") in notice[0]
    assert capsys.readouterr().err == ""


def test_onnx_session_rejects_foreign_files(tmp_path):
    pytest.importorskip("onnxruntime")
    from fillgap.runtime.onnx import OnnxSession

    (tmp_path / "x.onnx").write_bytes(b"not a graph")
    with pytest.raises(FillgapError, match="unreadable ONNX"):
        OnnxSession(tmp_path / "x.onnx")


# -- threads
def test_resolve_threads_precedence(monkeypatch):
    monkeypatch.setenv(rt.ENV, "3")
    assert rt.resolve_threads(1) == 1  # the option wins over the variable
    assert rt.resolve_threads() == 3
    monkeypatch.setenv(rt.ENV, "many")
    with pytest.raises(FillgapError, match=rt.ENV):
        rt.resolve_threads()
    monkeypatch.delenv(rt.ENV)
    monkeypatch.setattr(rt, "_cached", (-1e9, 0))
    assert 1 <= rt.resolve_threads() <= rt.available_cores()


def test_busy_cores_sees_a_spinning_process():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        assert rt.busy_cores() >= 1
    finally:
        spinner.kill()
        spinner.wait()


@pytest.fixture
def tiny_files(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    export_weights(tmp_path / "tiny.safetensors", create_model("ffc-tiny"))
    return tmp_path


@pytest.fixture
def seen_threads(monkeypatch):
    """torch.get_num_threads() as the network sees it, call by call."""
    seen = []
    original = InpaintModel.forward

    def forward(self, image, mask):
        seen.append(torch.get_num_threads())
        return original(self, image, mask)

    monkeypatch.setattr(InpaintModel, "forward", forward)
    before = torch.get_num_threads()
    yield seen
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "flag,env,expected", [(["--threads", "1"], None, 1), (["--threads", "3"], "1", 3), ([], "1", 1)]
)
def test_fill_threads_respected(tiny_files, seen_threads, monkeypatch, flag, env, expected):
    if env is None:
        monkeypatch.delenv(rt.ENV, raising=False)
    else:
        monkeypatch.setenv(rt.ENV, env)
    torch.set_num_threads(2)
    d = tiny_files
    code = main(
        [
            "fill",
            str(d / "in.png"),
            "--mask",
            str(d / "mask.png"),
            "-o",
            str(d / f"out{expected}.png"),
            "--model",
            str(d / "tiny.safetensors"),
        ]
        + flag
    )
    assert code == 0
    assert seen_threads and set(seen_threads) == {expected}


def _flip_inside_initializer(path: Path, n: int = 64) -> None:
    """Overwrite ``n`` bytes inside the largest weight of an ONNX file (found by its bytes)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    big = max(graph.initializer, key=lambda t: numpy_helper.to_array(t).nbytes)
    needle = numpy_helper.to_array(big).tobytes()[:256]
    raw = bytearray(path.read_bytes())
    at = raw.find(needle)
    assert at > 0, "weight bytes not found in the file"
    raw[at + 16 : at + 16 + n] = bytes(b ^ 0x5A for b in raw[at + 16 : at + 16 + n])
    path.write_bytes(bytes(raw))


@pytest.fixture
def onnx_cache(exported, monkeypatch, tmp_path):
    """FILLGAP_CACHE in tmp_path; exports copy the module's real export (the exporter is slow):
    returns the list of paths exported."""
    from fillgap.runtime import onnx as ro

    monkeypatch.setenv("FILLGAP_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_export(model, path, **kwargs):
        calls.append(Path(path))
        Path(path).write_bytes((exported[0] / "tiny.onnx").read_bytes())

    monkeypatch.setattr(ro, "export_onnx", fake_export)
    return calls


def test_a_damaged_cached_onnx_export_is_exported_again(exported, onnx_cache, tmp_path, capsys):
    """64 bytes overwritten inside a weight of the cached export: noticed by its checksum (it ran,
    with wrong pixels, before), re-exported with a one-line notice; a change after the check is refused."""
    from fillgap.methods import get_method

    export_weights(tmp_path / "w.safetensors", _tiny_net())
    first = get_method(tmp_path / "w.safetensors", runtime="onnx")
    good = first.path.read_bytes()
    _flip_inside_initializer(first.path)
    capsys.readouterr()
    again = get_method(tmp_path / "w.safetensors", runtime="onnx")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(onnx_cache) == 2 and again.path == first.path and again.path.read_bytes() == good
    assert len(err) == 1 and "does not match its checksum" in err[0] and "exporting it again" in err[0], err
    # Damaged between the check and a new session (another thread count): refused, not run.
    _flip_inside_initializer(again.path)
    torch.set_num_threads(2)
    try:
        with pytest.raises(FillgapError, match="checksum"):
            again._session()
    finally:
        torch.set_num_threads(1)


def test_the_onnx_cache_keeps_its_most_recently_used_exports_under_its_cap(exported, onnx_cache, tmp_path, monkeypatch):
    from fillgap.methods import get_method
    from fillgap.runtime import onnx as ro

    size = (exported[0] / "tiny.onnx").stat().st_size
    monkeypatch.setattr(ro, "CACHE_MAX_BYTES", int(2.5 * size))  # room for two exports
    paths = []
    for i in range(3):
        torch.manual_seed(i)
        export_weights(tmp_path / f"w{i}.safetensors", create_model("ffc-tiny", refine=False))
    for i in (0, 1, 0, 2):  # 0 used again after 1: 1 is the least recently used when 2 arrives
        paths.append(get_method(tmp_path / f"w{i}.safetensors", runtime="onnx").path)
        time.sleep(0.05)  # file times are coarser than a nanosecond
    assert len(onnx_cache) == 3
    assert paths[0].exists() and paths[3].exists() and not paths[1].exists()
    assert sorted(p.name for p in paths[0].parent.glob("*.onnx*")) == sorted(
        [paths[0].name, paths[0].name + ".sha256", paths[3].name, paths[3].name + ".sha256"]
    )


def test_onnx_files_with_non_finite_weights_are_refused(exported, tmp_path):
    """A NaN in a weight is refused by name; a scalar -inf (the constant of a masked softmax, as
    the exporter writes for attention) is not a weight and loads."""
    import onnx
    from onnx import numpy_helper

    from fillgap.runtime.onnx import OnnxSession

    proto = onnx.load(str(exported[0] / "tiny.onnx"))
    proto.graph.initializer.append(numpy_helper.from_array(np.array(-np.inf, np.float32), "val_masked"))
    onnx.save(proto, str(tmp_path / "scalar-inf.onnx"))
    OnnxSession(tmp_path / "scalar-inf.onnx", threads=1)
    first = proto.graph.initializer[0]
    array = numpy_helper.to_array(first).copy()
    array.reshape(-1)[3] = np.nan
    first.CopyFrom(numpy_helper.from_array(array, first.name))
    onnx.save(proto, str(tmp_path / "nan.onnx"))
    with pytest.raises(FillgapError, match=rf"nan.onnx has non-finite weights: '{first.name}' holds NaN"):
        OnnxSession(tmp_path / "nan.onnx", threads=1)
