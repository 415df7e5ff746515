"""The Ray engine on a local Ray with 2 CPUs: the local engine's outputs byte for byte, the same
failures file, resumable after its driver is killed (nothing written twice), refused on a locked
output folder, manifests with file:// URIs."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'fillgap[ray]'")

from fillgap.checkpoint import save_checkpoint  # noqa: E402
from fillgap.engines.common import FAILURES_NAME, _output_lock, read_failures  # noqa: E402
from fillgap.engines.local import fill_folder  # noqa: E402
from fillgap.engines.ray import fill_ray  # noqa: E402
from fillgap.errors import FillgapError  # noqa: E402
from fillgap.models import create_model  # noqa: E402

N, BROKEN = 200, ("b-junk.png", "b-truncated.png", "b-wrongsize.png", "b-emptyfile.png", "b-nomask.png")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one costs seconds), 2 CPUs, no cluster."""
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config={"worker_niceness": 0}
    )  # see fillgap.engines.ray.connect
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """200 tiny pictures (32x32) with masks; 5 of them broken in different ways."""
    root = tmp_path_factory.mktemp("rayfolder")
    torch.manual_seed(0)
    net = create_model("ffc-tiny")
    torch.nn.init.normal_(net.head.weight, std=0.05)  # the network, not only its Telea start, fills
    save_checkpoint(root / "tiny.pt", net)
    images, masks = root / "in", root / "masks"
    (images / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(N - len(BROKEN)):
        rel = f"sub/{i:03d}.png" if i % 4 == 0 else f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / rel)
        m = np.zeros((32, 32), np.uint8)
        if i % 10:  # every tenth mask is empty: the picture is copied
            t, left = rng.integers(0, 20, 2)
            m[t : t + 8, left : left + 10] = 255
        Image.fromarray(m).save(masks / rel)
    good = (images / "001.png").read_bytes()
    (images / "b-junk.png").write_bytes(b"not a picture at all")
    (images / "b-truncated.png").write_bytes(good[: len(good) // 2])
    (images / "b-emptyfile.png").write_bytes(b"")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / "b-wrongsize.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(masks / "b-wrongsize.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / "b-nomask.png")
    for name in BROKEN[:4]:
        if not (masks / name).exists():
            Image.fromarray(np.full((32, 32), 255, np.uint8)).save(masks / name)
    return root, images, masks


def outputs(out):
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != FAILURES_NAME and not p.name.startswith(".")
    }  # .fillgap-lock stays


def failure_names(out):
    return sorted(os.path.basename(p) for p, _ in read_failures(out))


def test_ray_equals_local_byte_for_byte_and_lists_exactly_the_broken(local_ray, folder, tmp_path, capfd):
    root, images, masks = folder
    # The fastest method keeps this test short; the killed-driver test below runs a network.
    capfd.readouterr()
    report = fill_ray(images, masks, tmp_path / "ray", "opencv-telea", actors=2, batch_size=16)
    err = capfd.readouterr().err  # Ray's C++ core writes to the process's stderr directly
    assert "constructor arguments in the object store" not in err and "Progress bars disabled" not in err, err
    local = fill_folder(images, masks, tmp_path / "local", "opencv-telea", batch_size=16)
    assert len(report.written) == len(local.written) == N - len(BROKEN)
    assert sorted(p.name for p, _ in report.failed) == sorted(BROKEN)
    assert failure_names(tmp_path / "ray") == failure_names(tmp_path / "local") == sorted(BROKEN)
    ray_out, local_out = outputs(tmp_path / "ray"), outputs(tmp_path / "local")
    assert len(ray_out) == N - len(BROKEN) and ray_out == local_out
    assert dict(read_failures(tmp_path / "ray")) == dict(read_failures(tmp_path / "local"))  # same reasons


def test_a_killed_driver_resumes_to_everything_written_once(local_ray, folder, tmp_path):
    root, images, masks = folder
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "fillgap",
        "fill",
        str(images),
        "--mask-dir",
        str(masks),
        "-o",
        str(out),
        "--model",
        str(root / "tiny.pt"),
        "--engine",
        "ray",
        "--address",
        local_ray,
        "--batch-size",
        "4",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300  # a busy machine can take minutes to start the run
    count = 0
    while time.time() < deadline and proc.poll() is None and count < 20:
        count = sum(1 for p in out.rglob("*.png") if not p.name.startswith(".")) if out.exists() else 0
        time.sleep(0.02)
    # ffc-tiny (36 ms a picture here) so that the run is still going when the driver is killed
    proc.send_signal(signal.SIGKILL)  # the driver dies; Ray then ends its job's actors
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    before, stable_since = {}, time.time()
    while time.time() - stable_since < 1.5:  # until Ray has ended the dead job's actors
        now = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.png") if not p.name.startswith(".")}
        if now != before:
            before, stable_since = now, time.time()
        time.sleep(0.1)
    assert 20 <= len(before) < N - len(BROKEN), "the driver was not stopped mid-run"

    report = fill_ray(images, masks, out, str(root / "tiny.pt"), actors=2, batch_size=16)
    done = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.png") if not p.name.startswith(".")}
    assert len(done) == N - len(BROKEN) and not list(out.rglob(".*fillgap-tmp"))
    assert all(done[p] == v for p, v in before.items())  # nothing written twice
    assert len(report.written) + len(report.skipped_existing) == N - len(BROKEN)
    assert len(report.written) == N - len(BROKEN) - len(before)
    assert failure_names(out) == sorted(BROKEN)


def test_a_second_run_on_a_locked_output_folder_is_refused(local_ray, folder, tmp_path):
    root, images, masks = folder
    out = tmp_path / "out"
    out.mkdir()
    with _output_lock(out):
        with pytest.raises(FillgapError, match="another fillgap run"):
            fill_ray(images, masks, out, "opencv-telea")
    assert [p.name for p in out.iterdir()] == [".fillgap-lock"]  # the held lock, nothing written


def test_manifest_with_file_uris_through_the_actor_code(folder, tmp_path):
    """The manifest plan is the engines' common one; the actor's code runs here in-process (no Ray
    start: that costs seconds and the tests above cover it)."""
    from fillgap.engines.common import plan_run
    from fillgap.engines.ray import FillActor

    root, images, masks = folder
    rows = [
        "picture,mask,output",
        f"{(images / '001.png').as_uri()},{(masks / '001.png').as_uri()},one.png",
        f"sub/000.png,{masks / 'sub' / '000.png'},",
        f"{(images / 'b-junk.png').as_uri()},{(masks / 'b-junk.png').as_uri()},junk.png",
    ]
    manifest = tmp_path / "list.csv"
    manifest.write_text("\n".join(rows) + "\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "000.png").write_bytes((images / "sub" / "000.png").read_bytes())
    run = plan_run(manifest, None, tmp_path / "ray")
    assert [(str(p), str(o)) for p, _, o in run.rows] == [
        (str(images / "001.png"), str(tmp_path / "ray" / "one.png")),
        (str(tmp_path / "sub" / "000.png"), str(tmp_path / "ray" / "000.png")),
        (str(images / "b-junk.png"), str(tmp_path / "ray" / "junk.png")),
    ]
    actor = FillActor(str(root / "tiny.pt"), dilate=0, overwrite=False, resize_mask=False, threads=1)
    batch = {k: np.array([str(r[i]) for r in run.rows]) for i, k in enumerate(("picture", "mask", "output"))}
    got = actor(batch)
    assert list(got["status"]) == ["written", "written", "failed"] and "not an image" in got["reason"][2]
    assert list(actor(batch)["status"]) == ["exists", "exists", "failed"]  # a rerun or a retried task
    (tmp_path / "ray" / "one.png").write_bytes(b"")  # cut short by a full disk: redone, as locally
    assert list(actor(batch)["status"]) == ["written", "exists", "failed"]
    from fillgap.checkpoint import load_model

    report = fill_folder(manifest, None, tmp_path / "local", load_model(root / "tiny.pt"))
    assert sorted(p.name for p in report.written) == ["000.png", "one.png"]
    assert failure_names(tmp_path / "local") == ["b-junk.png"]
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")


def test_a_failed_ray_job_is_one_line_and_keeps_the_lock_semantics(folder, tmp_path, monkeypatch):
    """An actor that cannot start (or a lost node) fails the Ray job: one line, not Ray's traceback."""
    import fillgap.engines.ray as engine

    root, images, masks = folder

    def boom(*args, **kwargs):
        raise RuntimeError("The actor died because of an error raised in its creation task\nTraceback ...")

    monkeypatch.setattr(engine, "connect", lambda *a, **k: False)
    monkeypatch.setattr(engine, "_execute", boom)
    with pytest.raises(FillgapError) as err:
        fill_ray(images, masks, tmp_path / "out", "opencv-telea")
    assert "\n" not in str(err.value) and "run the same command again" in str(err.value)
    with _output_lock(tmp_path / "out"):  # released: the next run may start
        pass


def test_ray_noise_is_dropped_and_real_errors_kept(capfd):
    """Ray's every-run notices go; anything else on stderr (its real errors, a progress bar's
    updates, Python's own output) passes as it was written."""
    import logging
    import re as regex

    from fillgap.engines.ray import RAY_NOISE_LINES, drop_stderr_lines, quiet_ray_logs

    noise = (
        b"[2026-12-05 04:40:30,519 E 9089 9089] core_worker.cc:2465: Actor with class name: "
        b"'MapWorker(MapBatches(FillActor))' and ID: '2b51' has constructor arguments in the object store and "
        b"max_restarts > 0. If the arguments in the object store go out of scope or are lost, the actor "
        b"restart will fail.\n"
    )
    real = b"[2026-12-05 04:40:31,000 E 9089 9089] core_worker.cc:812: Failed to register worker to Raylet\n"
    capfd.readouterr()
    with drop_stderr_lines(RAY_NOISE_LINES):
        os.write(2, b"before\n" + noise + real)
        os.write(2, b"\r 50%|#####     |\r100%|##########|")  # a bar: no newline
        time.sleep(0.3)
        sys.stderr.write("from python\n")
    os.write(2, b"after\n")
    assert (
        capfd.readouterr().err
        == (b"before\n" + real + b"\r 50%|#####     |\r100%|##########|from python\nafter\n").decode()
    )
    assert regex.search(RAY_NOISE_LINES, noise)

    quiet_ray_logs()
    quiet_ray_logs()  # once is enough: no second filter
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    token = logging.getLogger("ray._private.authentication.authentication_token_setup")
    assert len(token.filters) == 1
    handler = Keep()
    token.addHandler(handler)
    try:
        token.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
        token.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
    finally:
        token.removeHandler(handler)
    assert seen == ["Token authentication is disabled for this Ray cluster. Anyone with network access ..."]
