"""Bad images in a dataset: corrupt, truncated, decompression bombs (a small file declaring a
huge image) and unusable modes are DLSampleErrors naming the file, never another exception, a
crash or an out-of-memory (bomb reads run under an address-space limit of the current size
plus 1 GiB). Random byte mutations of valid PNG/JPEG/GIF/BMP/TIFF files either read as uint8
images equal to Pillow's own decoding or are such errors."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dlbatch
from dlbatch.core.errors import DLParamError, DLSampleError
from dlbatch.datasets import images
from dlbatch.datasets.images import read_image, read_label_image, set_max_image_pixels
from tests.reliability.test_hostile_onnx import _watched_and_bounded

MUTATIONS_PER_FORMAT = 120


@pytest.fixture(autouse=True)
def default_limit(default_max_image_pixels):
    """Every test starts and ends with the default pixel limit."""


def _pixels(h=12, w=16, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c)).astype(np.uint8)


def _encoded(fmt: str, image=None, **kw) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_pixels() if image is None else image).save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A valid PNG signature and IHDR (8-bit RGB) declaring width x height, with `idat` as its
    compressed data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _gif_declaring(width: int, height: int) -> bytes:
    good = _encoded("GIF", _pixels(4, 4, 1)[:, :, 0])
    return good[:6] + struct.pack("<HH", width, height) + good[10:]


def _refused(path: Path, pattern: str, reader=read_image, **kw) -> str:
    with pytest.raises(DLSampleError) as info:
        reader(path, **kw)
    message = str(info.value)
    assert str(path) in message
    assert __import__("re").search(pattern, message), message
    return message


# -- decompression bombs ----------------------------------------------------------------------
def test_images_declaring_billions_of_pixels_are_refused_from_the_header(tmp_path):
    bombs = {
        "png_100k_square.png": _png_declaring(100_000, 100_000, zlib.compress(b"\0" * 1000)),
        "png_max_width.png": _png_declaring(2 ** 31 - 1, 1),
        "gif_65535_square.gif": _gif_declaring(65535, 65535),
    }
    with _watched_and_bounded():
        for name, data in bombs.items():
            (tmp_path / name).write_bytes(data)
            _refused(tmp_path / name, r"(declares \d+ x \d+ pixels|has) more than the limit of \d+")
            _refused(tmp_path / name, r"more than the limit of \d+", reader=read_label_image)


def test_a_real_bomb_a_small_file_decoding_to_many_pixels_is_refused_below_the_limit(tmp_path):
    zeros = np.zeros((3000, 3000), np.uint8)  # 9 Mpixel of zeros compress to a few kB
    path = tmp_path / "zeros.png"
    Image.fromarray(zeros).save(path, optimize=True)
    assert path.stat().st_size < 50_000
    _refused(path, r"3000 x 3000 pixels, more than the limit of 1000000", max_pixels=1_000_000)
    set_max_image_pixels(2_000_000)
    _refused(path, r"more than the limit of 2000000")
    set_max_image_pixels(None)
    assert read_image(path).shape == (3000, 3000, 1)  # the default limit is far larger


def test_the_limit_comes_from_the_environment_and_is_validated(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    path.write_bytes(_encoded("PNG"))
    monkeypatch.setenv("DLBATCH_MAX_IMAGE_PIXELS", "100")
    assert images.max_image_pixels() == 100
    _refused(path, r"16 x 12 pixels, more than the limit of 100")
    monkeypatch.setenv("DLBATCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DLParamError, match="DLBATCH_MAX_IMAGE_PIXELS='lots'"):
        read_image(path)
    for bad in (0, -5, 2.5, True, "9"):
        with pytest.raises(DLParamError, match="pixel limit"):
            set_max_image_pixels(bad)


# -- corrupt, truncated, wrong modes ------------------------------------------------------------
@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("GIF", ".gif"), ("BMP", ".bmp"),
                                        ("TIFF", ".tif")])
def test_truncated_files_are_errors_naming_the_file(tmp_path, fmt, suffix):
    image = _pixels(40, 50, 1)[:, :, 0] if fmt == "GIF" else _pixels(40, 50)
    data = _encoded(fmt, image)
    for cut in sorted({0, 1, 8, 20, len(data) // 4, len(data) // 2, len(data) - 30}):
        path = tmp_path / f"cut{cut}{suffix}"
        path.write_bytes(data[:cut])
        _refused(path, r"cannot (read|decode)|corrupt|truncated|no pixels")


def test_wrongly_moded_images_are_errors_or_read_as_pillow_converts_them(tmp_path):
    cases = {
        "deep.png": Image.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000),
        "float.tif": Image.fromarray(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)),
        "int32.tif": Image.fromarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        _refused(tmp_path / name, r"mode '(I;16|F|I)'.*8 bits")
    cmyk = Image.fromarray(_pixels()).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg")
    with Image.open(tmp_path / "cmyk.jpg") as reference:
        expected = np.asarray(reference.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "cmyk.jpg"), expected)
    Image.fromarray(_pixels()).save(tmp_path / "rgb_label.png")
    _refused(tmp_path / "rgb_label.png", r"one channel .* got mode 'RGB'", reader=read_label_image)
    lab = Image.fromarray(_pixels()).convert("LAB")
    lab.save(tmp_path / "lab.tif")
    try:
        with Image.open(tmp_path / "lab.tif") as reference:
            expected = np.asarray(reference.convert("RGB"))
    except Exception:  # Pillow cannot convert it: dlbatch must say so naming the file
        _refused(tmp_path / "lab.tif", r"lab\.tif")
    else:
        np.testing.assert_array_equal(read_image(tmp_path / "lab.tif"), expected)


def _pillow_reference(path: Path):
    """What Pillow itself decodes (then dlbatch's documented conversion), or None on failure."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith(("I", "F")):
                return None
            if image.mode in ("L", "LA", "1") or (image.mode == "P" and images._grey_palette(image)):
                return np.asarray(image.convert("L"))[:, :, None]
            return np.asarray(image.convert("RGB"))
    except Exception:
        return None


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("GIF", ".gif"), ("BMP", ".bmp"),
                                        ("TIFF", ".tif")])
def test_random_byte_mutations_read_as_pillow_decodes_them_or_are_named_errors(tmp_path, fmt, suffix):
    image = _pixels(16, 16, 1)[:, :, 0] if fmt == "GIF" else _pixels(16, 16)
    good = bytearray(_encoded(fmt, image))
    rng = np.random.default_rng(zlib.crc32(fmt.encode()))
    read = refused = 0
    with _watched_and_bounded():
        for case in range(MUTATIONS_PER_FORMAT):
            data = bytearray(good)
            for _ in range(int(rng.integers(1, 6))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            if case % 4 == 0:  # header fields are where bombs and crashes hide
                at = int(rng.integers(0, min(40, len(data))))
                data[at:at + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
            path = tmp_path / f"m{case}{suffix}"
            path.write_bytes(bytes(data))
            try:
                got = read_image(path)
            except DLSampleError as exc:
                assert str(path) in str(exc)
                refused += 1
                continue
            read += 1
            assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] in (1, 3)
            expected = _pillow_reference(path)
            assert expected is not None and np.array_equal(got, expected), path
    assert read + refused == MUTATIONS_PER_FORMAT
    print(f"\n{fmt}: {read} mutated files read as Pillow decodes them, {refused} refused naming the file")


# -- in a dataset ----------------------------------------------------------------------------
def test_a_dataset_folder_with_bad_images_names_each_file_when_its_sample_is_read(tmp_path):
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(_pixels(seed=i)).save(root / name / f"{i}.png")
    (root / "cat" / "2.png").write_bytes(_encoded("PNG")[:60])                 # truncated
    (root / "dog" / "2.png").write_bytes(_png_declaring(80_000, 80_000))       # bomb
    (root / "dog" / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")   # corrupt
    dataset = dlbatch.read_dl_dataset(root)
    bad = {}
    for i in range(len(dataset)):
        try:
            sample = dataset[i]
        except DLSampleError as exc:
            bad[dataset.image_path(i).relative_to(root).as_posix()] = str(exc)
            assert str(dataset.image_path(i)) in str(exc)
        else:
            assert sample["image"].shape == (12, 16, 3)
    assert sorted(bad) == ["cat/2.png", "dog/2.png", "dog/3.jpg"]
    assert "more than the limit" in bad["dog/2.png"]
