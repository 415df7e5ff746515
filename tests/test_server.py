"""The web server's API against a live uvicorn on loopback: the fill, its limits, every error case."""

from __future__ import annotations

import concurrent.futures
import io
import socket
import tempfile
import threading

import httpx
import numpy as np
import pytest
from PIL import Image

from fillgap.checkpoint import export_weights
from fillgap.cli import main
from fillgap.models import create_model
from fillgap.server import ServerSettings, create_app, running

H, W = 48, 64
TIMEOUT = 120  # generous: the suite may run beside a training run on two cores


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2) % 256
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def hole() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[16:30, 20:44] = 255
    return mask


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    export_weights(path, create_model("ffc-tiny"), note="server test")
    return path


@pytest.fixture(scope="module")
def url(checkpoint):
    with running(create_app(checkpoint)) as base:
        yield base


def post(base: str, files: dict | None = None, data: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{base}/api/inpaint", files=files, data=data, timeout=TIMEOUT, **kwargs)


def decode(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_health_and_models(url):
    assert httpx.get(f"{url}/health", timeout=TIMEOUT).json() == {"status": "ok", "model": "ffc-tiny"}
    body = httpx.get(f"{url}/api/models", timeout=TIMEOUT).json()
    assert body["loaded"]["name"] == "ffc-tiny"
    assert body["loaded"]["metadata"] == {"note": "server test"}
    assert body["loaded"]["source"].endswith("tiny.safetensors")
    assert body["limits"] == {"max_upload_bytes": 50 * 1024 * 1024, "max_pixels": 40_000_000}
    # fill methods only: an architecture (untrained weights) is not something to fill with
    assert {"fillgap-network", "fillgap-texture", "opencv-telea"} <= set(
        body["registered"]
    ) and "ffc-small" not in body["registered"]


def test_models_api_describes_the_default_s_network_without_server_paths():
    """The default is the texture stage on the shipped network: /api/models shows that network's
    weights metadata, and a textured method named by the client shows no path of the server's."""
    for model, source in ((None, "default"), ("fillgap-texture", "ffc-default.safetensors")):
        with running(create_app(model)) as base:
            loaded = httpx.get(f"{base}/api/models", timeout=TIMEOUT).json()["loaded"]
        assert loaded["name"] == "fillgap-texture" and loaded["source"] == source
        assert loaded["metadata"].get("total_steps") and loaded["settings"]


def test_page_and_docs_are_served(url):
    page = httpx.get(f"{url}/", timeout=TIMEOUT)
    assert page.status_code == 200 and '<canvas id="mask">' in page.text
    for asset in ("app.js", "style.css"):
        assert httpx.get(f"{url}/static/{asset}", timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{url}/docs", timeout=TIMEOUT).status_code == 200
    spec = httpx.get(f"{url}/openapi.json", timeout=TIMEOUT).json()
    form = spec["paths"]["/api/inpaint"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(form["schema"]["required"]) == {"image", "mask"}


def test_fill_changes_only_the_hole(url, picture, hole):
    out = decode(
        post(
            url, {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
        )
    )
    assert out.shape == picture.shape
    inside = hole > 0
    assert np.array_equal(out[~inside], picture[~inside])  # bit-identical outside
    assert (out[inside] != picture[inside]).any(axis=1).mean() > 0.5


def test_an_inverted_or_photo_mask_is_refused_unless_forced(url, picture, hole):
    """As the CLI refuses such a mask file: otherwise the answer is a picture-sized smear with a 200."""
    files = {"image": ("p.png", png_bytes(picture), "image/png")}
    inverted = {**files, "mask": ("m.png", png_bytes(255 - hole), "image/png")}
    r = post(url, files=inverted)
    assert r.status_code == 422 and "would fill" in r.json()["detail"] and "force=true" in r.json()["detail"]
    photo = {**files, "mask": ("m.png", png_bytes(picture), "image/png")}
    r = post(url, files=photo)
    assert r.status_code == 422 and "looks like a photo" in r.json()["detail"]
    r = post(url, files=inverted, data={"force": "true"})
    assert r.status_code == 200, r.text


def test_a_request_may_name_another_registered_method(url, picture, hole):
    """The form's `model`: any fill method of /api/models' `registered` list, loaded on first use."""
    from fillgap import inpaint

    files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
    r = post(url, files=files, data={"model": "opencv-telea"})
    assert r.status_code == 200, r.text
    telea = inpaint(picture, hole, "opencv-telea")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")), telea)
    default = post(url, files=files)
    assert default.status_code == 200 and default.content != r.content  # the loaded model otherwise
    r = post(url, files=files, data={"model": "ffc-small"})  # an architecture is no fill method
    assert r.status_code == 422 and "'model' must be one of" in r.json()["detail"]


def test_empty_mask_returns_the_input(url, picture):
    out = decode(
        post(
            url,
            {
                "image": ("p.png", png_bytes(picture), "image/png"),
                "mask": ("m.png", png_bytes(np.zeros((H, W), np.uint8)), "image/png"),
            },
        )
    )
    assert np.array_equal(out, picture)


def test_transparent_mask_and_alpha_are_kept(url, picture, hole):
    """The page sends white-on-transparent masks; an RGBA picture keeps its alpha."""
    alpha = np.full((H, W), 200, np.uint8)
    rgba = np.dstack([picture, alpha])
    mask_rgba = np.zeros((H, W, 4), np.uint8)
    mask_rgba[hole > 0] = 255
    out = decode(
        post(
            url,
            {
                "image": ("p.png", png_bytes(rgba, "RGBA"), "image/png"),
                "mask": ("m.png", png_bytes(mask_rgba, "RGBA"), "image/png"),
            },
        )
    )
    assert out.shape == (H, W, 4) and np.array_equal(out[..., 3], alpha)
    assert np.array_equal(out[hole == 0, :3], picture[hole == 0])


def test_the_answer_keeps_the_colour_profile_and_greyscale(url, picture, hole):
    """As `fillgap fill` writes it: the ICC profile travels, a greyscale picture comes back grey."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", icc_profile=icc)
    r = post(url, {"image": ("p.png", buffer.getvalue(), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")})
    assert Image.open(io.BytesIO(r.content)).info.get("icc_profile") == icc
    grey = decode(
        post(
            url,
            {
                "image": ("g.png", png_bytes(picture[..., 1], "L"), "image/png"),
                "mask": ("m.png", png_bytes(hole), "image/png"),
            },
        )
    )
    assert grey.shape == (H, W) and np.array_equal(grey[hole == 0], picture[..., 1][hole == 0])


@pytest.mark.parametrize(
    "files, status, words",
    [
        ({}, 422, "no 'image' file"),
        ({"mask": ("m.png", b"x", "image/png")}, 422, "no 'image' file"),
        ({"image": ("p.png", b"", "image/png"), "mask": ("m.png", b"x", "image/png")}, 422, "no 'image' file"),
        (
            {"image": ("notes.txt", b"hello", "text/plain"), "mask": ("m.png", b"x", "image/png")},
            415,
            "'image' must be a picture",
        ),
        (
            {"image": ("p.png", b"this is no picture at all", "image/png"), "mask": ("m.png", b"x", "image/png")},
            422,
            "image 'p.png'",
        ),
    ],
)
def test_missing_or_non_image_uploads(url, picture, files, status, words):
    if "image" in files and "mask" in files:
        files = {**files, "mask": ("m.png", png_bytes(np.zeros((H, W), np.uint8)), "image/png")}
    response = post(url, files or {"dilate": (None, b"0")})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_not_a_form(url):
    response = httpx.post(f"{url}/api/inpaint", json={"image": "x"}, timeout=TIMEOUT)
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]
    bad = httpx.post(
        f"{url}/api/inpaint", content=b"--nope\r\n", headers={"content-type": "multipart/form-data"}, timeout=TIMEOUT
    )
    assert bad.status_code == 422 and "boundary" in bad.json()["detail"]


def test_truncated_image(url, picture, hole):
    data = jpeg_bytes(picture)
    response = post(
        url,
        {"image": ("cut.jpg", data[: len(data) // 2], "image/jpeg"), "mask": ("m.png", png_bytes(hole), "image/png")},
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "cut.jpg" in detail and ("truncated" in detail or "corrupt" in detail)


def test_wrong_mask_size_is_422_unless_resize_is_asked(url, picture, hole):
    small = hole[::2, ::2].copy()
    files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(small), "image/png")}
    response = post(url, files)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"the mask is {W // 2}x{H // 2} but the image is {W}x{H}")
    out = decode(post(url, files, data={"resize_mask": "true"}))
    far = np.ones((H, W), bool)
    far[14:32, 18:46] = False  # the hole plus the pixel that linear scaling blurs into
    assert np.array_equal(out[far], picture[far])
    assert (out[hole > 0] != picture[hole > 0]).any()


@pytest.mark.parametrize("value, words", [("-1", "between 0 and"), ("lots", "whole number")])
def test_bad_dilate(url, picture, hole, value, words):
    response = post(
        url,
        {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")},
        data={"dilate": value},
    )
    assert response.status_code == 422 and words in response.json()["detail"]


def test_upload_and_pixel_limits(checkpoint, picture, hole):
    settings = ServerSettings(max_upload_bytes=20_000, max_pixels=W * H - 1)
    with running(create_app(checkpoint, settings)) as base:
        big = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
        too_big = post(
            base, {"image": ("big.png", png_bytes(big), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
        )
        assert too_big.status_code == 413
        assert too_big.json()["detail"].startswith("upload too large: the limit is")
        too_many = post(
            base, {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
        )
        assert too_many.status_code == 413
        detail = too_many.json()["detail"]
        assert f"is {W}x{H}" in detail and "--max-pixels" in detail


def test_no_file_is_written_without_save_dir(url, picture, hole, monkeypatch):
    """A body over a megabyte is where Starlette's form parser would roll over to a temp file."""
    made = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        real = getattr(tempfile, name)
        monkeypatch.setattr(
            tempfile, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k)
        )
    noise = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    padding = ("pad.png", b"\0" * 1_500_000, "application/octet-stream")
    response = post(
        url,
        {
            "image": ("p.png", png_bytes(noise), "image/png"),
            "mask": ("m.png", png_bytes(hole), "image/png"),
            "padding": padding,
        },
    )
    assert response.status_code == 200
    assert "x-fillgap-saved" not in response.headers
    assert made == []


def test_save_dir_uses_generated_names_only(checkpoint, picture, hole, tmp_path):
    save_dir = tmp_path / "results"
    with running(create_app(checkpoint, ServerSettings(save_dir=save_dir))) as base:
        response = post(
            base,
            {
                "image": ("../../escape.png", png_bytes(picture), "image/png"),
                "mask": ("/etc/m.png", png_bytes(hole), "image/png"),
            },
        )
    out = decode(response)
    saved = list(save_dir.iterdir())
    assert [p.name for p in saved] == [response.headers["x-fillgap-saved"]]
    assert "escape" not in saved[0].name
    assert list(tmp_path.iterdir()) == [save_dir]
    assert np.array_equal(np.asarray(Image.open(saved[0])), out)


def test_concurrent_requests_share_the_loaded_model(checkpoint, picture, hole, monkeypatch):
    app = create_app(checkpoint)

    def no_reload(*args, **kwargs):
        raise AssertionError("the model was loaded again for a request")

    monkeypatch.setattr("fillgap.checkpoint.load_model", no_reload)
    files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
    with running(app) as base, concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: decode(post(base, files)), range(6)))
    assert all(np.array_equal(o, outs[0]) for o in outs)


def test_cli_errors_are_one_line(checkpoint, capsys):
    assert main(["serve", "--model", "missing.safetensors"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fillgap: error: ") and "not found: missing.safetensors" in err[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(checkpoint), "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fillgap: error: cannot listen on 127.0.0.1:{port}")


# -- staying up: slow clients, hang-ups, bounded memory ------------------------------------


def _form(picture, hole) -> tuple[bytes, str]:
    """A multipart body and its content type, for raw-socket clients."""
    request = httpx.Request(
        "POST",
        "http://x/api/inpaint",
        files={"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")},
    )
    return request.read(), request.headers["content-type"]


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _head(base: str, length: int, ctype: str = "multipart/form-data; boundary=x") -> bytes:
    return (
        f"POST /api/inpaint HTTP/1.1\r\nHost: {base}\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_64_slow_clients_do_not_lock_out_a_normal_request(checkpoint, picture, hole):
    import time

    body, ctype = _form(picture, hole)
    with running(create_app(checkpoint)) as base:
        slow = []
        for i in range(64):  # half stuck in their headers, half in their body
            s = _connect(base)
            s.sendall(_head(base, len(body), ctype)[:30] if i % 2 else _head(base, len(body), ctype) + body[:10])
            slow.append(s)
        try:
            started = time.monotonic()
            response = httpx.post(
                f"{base}/api/inpaint",
                timeout=5,
                files={
                    "image": ("p.png", png_bytes(picture), "image/png"),
                    "mask": ("m.png", png_bytes(hole), "image/png"),
                },
            )
            assert response.status_code == 200 and time.monotonic() - started < 5
        finally:
            for s in slow:
                s.close()


def test_stalled_clients_are_cut_off(checkpoint, picture, hole, caplog):
    import logging
    import time

    caplog.set_level(logging.INFO, logger="fillgap")
    body, ctype = _form(picture, hole)
    app = create_app(checkpoint, ServerSettings(header_timeout=1, body_idle_timeout=1))
    with running(app) as base:
        with _connect(base) as s:  # stops in the middle of its body: 408, then closed
            s.sendall(_head(base, len(body), ctype) + body[:100])
            started = time.monotonic()
            answer = b""
            while chunk := s.recv(65536):  # the head and the body may come in separate packets
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer
            assert time.monotonic() - started < 4
        with _connect(base) as s:  # stops in the middle of its head: closed
            s.sendall(b"POST /api/inpaint HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert s.recv(65536) == b"" and time.monotonic() - started < 4
        assert (
            post(
                base,
                {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")},
            ).status_code
            == 200
        )
    messages = [r.getMessage() for r in caplog.records]
    assert any("no complete request head" in m for m in messages)
    assert any('"POST /api/inpaint" 408' in m for m in messages)
    assert any('"POST /api/inpaint" 200' in m for m in messages)  # the access log


@pytest.fixture
def held_fills(monkeypatch):
    """The server's fills wait until released: (release event, list with one entry per fill started)."""
    import threading

    import fillgap.server.app as server  # the module whose names the routes use

    release, filled, real = threading.Event(), [], server.inpaint

    def slow_inpaint(*args, **kwargs):
        filled.append(1)
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(server, "inpaint", slow_inpaint)
    yield release, filled
    release.set()  # a failed test leaves no server thread waiting


def test_hang_ups_are_one_line_and_never_filled(checkpoint, picture, hole, caplog, held_fills):
    import logging
    import time

    caplog.set_level(logging.INFO, logger="fillgap")
    release, filled = held_fills
    body, ctype = _form(picture, hole)
    with running(create_app(checkpoint)) as base, concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            post,
            base,
            {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")},
        )
        while not filled:
            time.sleep(0.05)
        with _connect(base) as s:  # a whole request, then the client leaves while it waits
            s.sendall(_head(base, len(body), ctype) + body)
            time.sleep(0.5)
        with _connect(base) as s:  # leaves in the middle of its upload
            s.sendall(_head(base, len(body), ctype) + body[:200])
            time.sleep(0.5)
        release.set()
        assert first.result().status_code == 200
        time.sleep(1)
    assert len(filled) == 1  # the one whose client stayed
    gone = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(gone) == 2, [r.getMessage() for r in gone]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_busy_server_answers_503_with_retry_after_at_once(checkpoint, picture, hole, held_fills):
    import time

    release, filled = held_fills
    files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
    app = create_app(checkpoint, ServerSettings(max_pixels_in_flight=H * W))  # room for one picture
    with running(app) as base, concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, base, files)
        while not filled:
            time.sleep(0.05)
        started = time.monotonic()
        second = post(base, files)
        assert second.status_code == 503 and second.headers["retry-after"] == "5"
        assert "busy" in second.json()["detail"] and time.monotonic() - started < 2
        release.set()
        assert first.result().status_code == 200
        assert post(base, files).status_code == 200  # room again


def test_models_answer_names_no_server_path(url, checkpoint):
    body = httpx.get(f"{url}/api/models", timeout=TIMEOUT).json()
    assert body["loaded"]["source"] == "tiny.safetensors"
    assert str(checkpoint.parent) not in httpx.get(f"{url}/api/models", timeout=TIMEOUT).text


def test_a_form_cannot_raise_the_servers_working_size(checkpoint, picture, hole, monkeypatch):
    seen = []
    import fillgap.server.app as server  # the module whose names the routes use

    real = server.inpaint
    monkeypatch.setattr(server, "inpaint", lambda *a, **k: seen.append(k["max_side"]) or real(*a, **k))
    with running(create_app(checkpoint, ServerSettings(max_side=128))) as base:
        files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
        refused = post(base, files, data={"max_side": "65536"})
        assert refused.status_code == 422 and "max_side" in refused.json()["detail"]
        decode(post(base, files, data={"max_side": "64"}))  # lowering it is fine
    assert seen == [64]


def test_only_known_picture_formats_are_decoded(url, picture, hole):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\nshowpage\n"
    for data in (eps, png_bytes(picture)[:0] + b"P6\n64 48\n255\n" + picture.tobytes()):  # EPS, PPM
        answer = post(
            url, {"image": ("p.x", data, "application/octet-stream"), "mask": ("m.png", png_bytes(hole), "image/png")}
        )
        assert answer.status_code == 422 and "not an image" in answer.json()["detail"], answer.text


def test_other_sites_pages_and_foreign_host_names_are_refused(checkpoint, picture, hole):
    from fillgap.server import default_allowed_hosts

    files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
    settings = ServerSettings(allowed_hosts=default_allowed_hosts("127.0.0.1"), allow_origins=("https://ok.example",))
    with running(create_app(checkpoint, settings)) as base:
        # a page on another site posting a form (a browser sends its Origin): refused before the fill
        answer = post(base, files, headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403 and "--allow-origin" in answer.json()["detail"]
        decode(post(base, files, headers={"Origin": base}))  # the server's own page
        decode(post(base, files, headers={"Origin": "https://ok.example"}))  # an allowed origin
        decode(post(base, files))  # no Origin: curl, scripts
        # DNS rebinding: a name that resolves here but is not this server's
        port = base.rsplit(":", 1)[1]
        answer = httpx.get(f"{base}/api/models", headers={"Host": f"evil.example:{port}"}, timeout=TIMEOUT)
        assert answer.status_code == 400 and "--allowed-hosts" in answer.json()["detail"]
        assert httpx.get(f"{base}/health", headers={"Host": f"localhost:{port}"}, timeout=TIMEOUT).status_code == 200
    assert default_allowed_hosts("0.0.0.0") is None
    assert default_allowed_hosts("::1") == ("[::1]", "localhost", "127.0.0.1")


def test_masks_count_against_the_pixel_budget_and_are_size_checked_before_decoding(
    checkpoint, picture, hole, monkeypatch
):
    import fillgap.server.app as server  # the module whose names the routes use

    decoded = []
    real = server.read_mask_bytes
    monkeypatch.setattr(server, "read_mask_bytes", lambda *a, **k: decoded.append(1) or real(*a, **k))
    big = np.zeros((H * 8, W * 8), np.uint8)
    files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(big), "image/png")}
    # the picture alone fits the in-flight budget twice over; with its 64x larger mask it does not
    settings = ServerSettings(max_pixels_in_flight=H * W * 2)
    with running(create_app(checkpoint, settings)) as base:
        answer = post(base, files)  # without resize_mask: 422 from the headers, the mask never decoded
        assert answer.status_code == 422 and answer.json()["detail"].startswith(f"the mask is {W * 8}x{H * 8}")
        assert decoded == []
        release, started = threading.Event(), threading.Event()
        real_fill = server.inpaint

        def held(*a, **k):
            started.set()
            release.wait(30)
            return real_fill(*a, **k)

        monkeypatch.setattr(server, "inpaint", held)
        small = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
        first = concurrent.futures.ThreadPoolExecutor(1).submit(post, base, small)
        assert started.wait(30)
        busy = post(base, files, data={"resize_mask": "true"})  # 65 pictures' worth of pixels: no room
        release.set()
        assert busy.status_code == 503, busy.text
        assert first.result().status_code == 200


def test_a_form_of_many_parts_is_refused_without_parsing_them_all(url):
    import time

    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'
    body = (part * 200_000 + f"--{boundary}--\r\n").encode()  # 12 MB of one-byte fields
    started = time.monotonic()
    answer = httpx.post(
        f"{url}/api/inpaint",
        content=body,
        timeout=TIMEOUT,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert answer.status_code == 413 and "more than 32 parts" in answer.json()["detail"]
    # before, all 200,000 parts were parsed (1.8 s here), then a 422; a million took 46 s
    assert time.monotonic() - started < 10


# -- lock-out, deadlines, hang-ups during the fill, unread answers ---------------------------


def test_half_open_connections_do_not_lock_out_a_fill(checkpoint, picture, hole):
    import time

    files = {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")}
    with running(create_app(checkpoint, ServerSettings(max_connections=32))) as base:
        half_open = []
        try:
            for _ in range(64):  # twice the cap, each with 26 bytes of a request head
                s = _connect(base)
                s.sendall(b"POST /api/inpaint HTTP/1.1")
                half_open.append(s)
            time.sleep(0.3)
            started = time.monotonic()
            response = httpx.post(f"{base}/api/inpaint", files=files, timeout=10)
            assert response.status_code == 200 and time.monotonic() - started < 5
        finally:
            for s in half_open:
                s.close()


def test_requests_beyond_the_cap_get_json_503_with_retry_after(checkpoint, picture, hole):
    import time

    body, ctype = _form(picture, hole)
    with running(create_app(checkpoint, ServerSettings(max_connections=4))) as base:
        stalled = []
        try:
            for _ in range(4):  # four requests in progress: heads in, bodies stalled
                s = _connect(base)
                s.sendall(_head(base, len(body), ctype) + body[:10])
                stalled.append(s)
            time.sleep(0.3)
            response = post(
                base,
                {"image": ("p.png", png_bytes(picture), "image/png"), "mask": ("m.png", png_bytes(hole), "image/png")},
            )
            assert response.status_code == 503 and response.headers["retry-after"] == "5"
            assert "busy" in response.json()["detail"]
        finally:
            for s in stalled:
                s.close()


@pytest.fixture
def slow_method():
    """A classical method that takes 0.1 s per window, and a 500 x 500 picture whose mask has 25
    windows: a 2.5 s fill that can be stopped between windows. Yields (method, form, calls)."""
    import time

    from fillgap.methods import ClassicalMethod

    calls = []

    def slow_mean(img, hole):
        calls.append(time.monotonic())
        time.sleep(0.1)
        out = img.copy()
        out[hole] = img[~hole].mean(axis=0).astype(np.uint8)
        return out

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (500, 500, 3), dtype=np.uint8)
    mask = np.zeros((500, 500), np.uint8)
    for y in range(40, 500, 100):  # dots 100 px apart: one window each
        for x in range(40, 500, 100):
            mask[y : y + 3, x : x + 3] = 255
    files = {"image": ("p.png", png_bytes(image), "image/png"), "mask": ("m.png", png_bytes(mask), "image/png")}
    return ClassicalMethod("slow-mean", slow_mean, 4096), files, calls


def test_a_fill_stops_soon_after_its_client_hangs_up(slow_method, caplog):
    import logging
    import time

    caplog.set_level(logging.INFO, logger="fillgap")
    method, files, calls = slow_method
    request = httpx.Request("POST", "http://x/api/inpaint", files=files)
    body, ctype = request.read(), request.headers["content-type"]
    with running(create_app(method)) as base:
        with _connect(base) as s:
            s.sendall(_head(base, len(body), ctype) + body)
            while not calls:
                time.sleep(0.02)
            time.sleep(0.3)
        hung_up = time.monotonic()
        time.sleep(1.0)
        assert calls[-1] - hung_up < 0.5, "windows were still filled a second after the client left"
        assert len(calls) < 25
    assert any("left during the fill" in r.getMessage() for r in caplog.records)


def test_a_fill_stops_at_the_request_deadline(slow_method):
    import time

    method, files, calls = slow_method
    with running(create_app(method, ServerSettings(request_timeout=1.0))) as base:
        started = time.monotonic()
        response = post(base, files)
        answered = time.monotonic()
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert "did not finish within" in response.json()["detail"]
        assert answered - started < 2.5
        time.sleep(0.5)
        assert len(calls) < 25 and calls[-1] < answered


def test_an_answer_nobody_reads_is_dropped_at_the_deadline(checkpoint, picture, hole, monkeypatch, caplog):
    import logging
    import time

    import fillgap.server.app as server  # the module whose names the routes use

    caplog.set_level(logging.INFO, logger="fillgap")
    big = b"\0" * (48 << 20)  # more than the kernel's socket buffers hold: most stays in the server
    monkeypatch.setattr(server, "encode_png", lambda *args, **kwargs: big)
    body, ctype = _form(picture, hole)
    with running(create_app(checkpoint, ServerSettings(request_timeout=1.0))) as base:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing
        s.settimeout(10)
        with s:
            s.connect((host, int(port)))
            s.sendall(_head(base, len(body), ctype) + body)
            time.sleep(3)  # past the deadline (1 s, then 1 s of grace)
            got = 0
            try:
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
                    if got > len(big):
                        break
            except ConnectionResetError:
                pass
        assert got < len(big) // 2, "the whole answer was still waiting to be read"
    assert any("not delivered" in r.getMessage() for r in caplog.records)
