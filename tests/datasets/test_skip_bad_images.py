"""read_dl_dataset(skip_bad_images=True) and `--skip-bad-images`: in a folder of every dataset
format holding good samples and bad files (truncated PNG and JPEG, random bytes, a PNG header
declaring 10^10 pixels, a 16-bit image, and per format a label image of the wrong size or mode
or an image whose size contradicts the annotations), the good samples read as Pillow decodes
them, one DLDataWarning names every bad file with the very message reading that sample gives
without the option, splits are kept, and a model trains on what is left; without the option
the dataset reads as before and each bad sample is that DLSampleError when it is read."""
from __future__ import annotations

import io
import json
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import dlbatch
from dlbatch.core.errors import DLError, DLSampleError
from dlbatch.datasets import DLDataWarning, dataset as dataset_module, read_dl_dataset
from dlbatch.datasets.images import check_image, read_image, set_max_image_pixels
from tests.datasets.helpers import dump, pixels, save
from tests.reliability.test_bad_images import _png_declaring

H, W = 24, 32
TRUNCATED = r"cannot (read|decode) the image.*(truncated|corrupt)"
BAD_IMAGES = {  # file name -> (bytes, the reason's pattern)
    "cut.png": (None, TRUNCATED),
    "cut_jpeg.jpg": (None, TRUNCATED),
    "noise.png": (bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8)), r"cannot read the image"),
    "bomb.png": (_png_declaring(100_000, 100_000, zlib.compress(b"\0" * 1000)),
                 r"more than the limit of \d+ (pixels|.*decompression bomb)"),
    "deep.png": (None, r"mode 'I;16'.*convert it to 8 bits"),
}


@pytest.fixture(autouse=True)
def default_limit(default_max_image_pixels):
    """Every test starts and ends with the default pixel limit."""


def encoded(fmt: str, array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def write_bad(path: Path) -> None:
    data = BAD_IMAGES[path.name][0]
    if path.name == "cut.png":
        data = encoded("PNG", pixels(H, W, seed=5))[:-200]
    elif path.name == "cut_jpeg.jpg":
        data = encoded("JPEG", pixels(H * 4, W * 4, seed=6))
        data = data[: len(data) * 2 // 3]
    elif path.name == "deep.png":
        data = encoded("PNG", (pixels(H, W, 1, seed=7).astype(np.uint16) * 257))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# -- one dataset per format: (path to read, {bad file: reason pattern}, good image files) -----------
def classification_folder(root: Path):
    good = [save(root / "ok" / "a.png", pixels(H, W, seed=1)), save(root / "nok" / "b.png", pixels(H, W, 1, seed=2))]
    bad = {}
    for k, name in enumerate(BAD_IMAGES):
        path = root / ("ok", "nok")[k % 2] / name
        write_bad(path)
        bad[path] = BAD_IMAGES[name][1]
    return root, bad, good


def coco_json(root: Path):
    names = ["good0.png", "good1.png", *BAD_IMAGES, "wrong_size.png"]
    images, annotations = [], []
    for k, name in enumerate(names):
        images.append({"id": k + 1, "file_name": f"images/{name}", "width": W, "height": H})
        annotations.append({"id": k + 1, "image_id": k + 1, "category_id": 1 + k % 2, "bbox": [2, 3, 10, 8]})
    good = [save(root / "images" / n, pixels(H, W, seed=k)) for k, n in enumerate(names[:2])]
    bad = {}
    for name in BAD_IMAGES:
        write_bad(root / "images" / name)
        bad[root / "images" / name] = BAD_IMAGES[name][1]
    save(root / "images" / "wrong_size.png", pixels(H + 1, W, seed=9))
    bad[root / "images" / "wrong_size.png"] = rf"image is {H + 1} x {W} pixels .* the dataset index says {H} x {W}"
    path = dump(root / "coco.json", {"images": images, "annotations": annotations,
                                     "categories": [{"id": 1, "name": "nut"}, {"id": 2, "name": "bolt"}]})
    return path, bad, good


def segmentation_folder(root: Path, classes_file: bool = True):
    labels = lambda seed, h=H, w=W, c=1: (pixels(h, w, c, seed=seed) % 3).astype(np.uint8)  # noqa: E731
    good = []
    for k in range(2):
        good.append(save(root / "images" / f"good{k}.png", pixels(H, W, seed=k)))
        save(root / "labels" / f"good{k}.png", labels(10 + k))
    bad = {}
    for name in BAD_IMAGES:
        write_bad(root / "images" / name)
        save(root / "labels" / f"{Path(name).stem}.png", labels(20))
        bad[root / "images" / name] = BAD_IMAGES[name][1]
    save(root / "images" / "small_label.png", pixels(H, W, seed=3))
    save(root / "labels" / "small_label.png", labels(21, h=H - 4))
    bad[root / "labels" / "small_label.png"] = rf"label image is {H - 4} x {W} pixels but its image .* is {H} x {W}"
    save(root / "images" / "colour_label.png", pixels(H, W, seed=4))
    save(root / "labels" / "colour_label.png", labels(22, c=3))
    bad[root / "labels" / "colour_label.png"] = r"label image must have one channel.*mode 'RGB'"
    save(root / "images" / "cut_label.png", pixels(H, W, seed=5))
    (root / "labels" / "cut_label.png").write_bytes(encoded("PNG", labels(23))[:60])
    bad[root / "labels" / "cut_label.png"] = r"cannot (read|decode) the label image"
    if classes_file:
        dump(root / "classes.json", {"class_ids": [0, 1, 2], "class_names": ["bg", "scratch", "dent"]})
    return root, bad, good


def halcon_json(root: Path):
    """Classification with splits; one sample's image does not exist."""
    samples, good = [], []
    for k, split in enumerate(["train", "train", "validation"]):
        good.append(save(root / "images" / f"good{k}.png", pixels(H, W, seed=k)))
        samples.append({"image_file_name": f"good{k}.png", "image_id": k, "image_label_id": k % 2, "split": split})
    bad = {}
    for k, name in enumerate([*BAD_IMAGES, "missing.png"]):
        if name in BAD_IMAGES:
            write_bad(root / "images" / name)
            bad[root / "images" / name] = BAD_IMAGES[name][1]
        else:
            bad[root / "images" / name] = r"image file not found"
        samples.append({"image_file_name": name, "image_id": 10 + k, "image_label_id": 1,
                        "split": ["train", "validation", "test"][k % 3]})
    path = dump(root / "dataset.json", {"class_ids": [0, 1], "class_names": ["good", "bad"], "image_dir": "images",
                                        "samples": samples})
    return path, bad, good


FORMATS = {"classification": classification_folder, "coco": coco_json, "segmentation": segmentation_folder,
           "segmentation_without_classes_file": lambda root: segmentation_folder(root, classes_file=False),
           "halcon": halcon_json}


def read_skipping(path, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_dl_dataset(path, skip_bad_images=True, **options)
    ours = [w for w in caught if issubclass(w.category, DLDataWarning)]
    return data, ours


def reason_line(message: str, path: Path) -> str:
    lines = [line for line in message.splitlines() if line.strip().startswith(f"{path}:")]
    assert len(lines) == 1, (path, message)
    return lines[0].strip()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_skipping_keeps_the_good_samples_and_warns_once_naming_each_bad_file(tmp_path, fmt):
    path, bad, good = FORMATS[fmt](tmp_path)
    data, caught = read_skipping(path)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    total = len(good) + len(bad)
    assert message.startswith(f"skipped {len(bad)} of {total} samples of ")
    assert Path(caught[0].filename).resolve() == Path(__file__).resolve()  # points at the caller
    for file, pattern in bad.items():
        assert re.search(pattern, reason_line(message, file)), (file, message)
    assert len(data) == len(good) and sorted(data.image_path(i) for i in range(len(data))) == sorted(good)
    assert {Path(reason.split(": ")[0]) for _, reason in data.skipped_samples} == set(bad)
    for i in range(len(data)):  # what is left reads as Pillow decodes it
        want = np.asarray(Image.open(data.image_path(i)))
        got = data[i]["image"]
        np.testing.assert_array_equal(got, want if want.ndim == 3 else want[:, :, None])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_without_the_option_each_bad_sample_is_the_same_error_when_it_is_read(tmp_path, fmt):
    path, bad, good = FORMATS[fmt](tmp_path)
    skipped = dict(read_skipping(path)[0].skipped_samples)
    if fmt == "halcon":  # the missing file is found when the JSON is read, as before
        with pytest.raises(DLSampleError, match=r"missing\.png: image file not found"):
            read_dl_dataset(path)
        data = read_dl_dataset(path, check_files=False)
    elif fmt == "segmentation_without_classes_file":  # class ids come from reading every label image
        with pytest.raises(DLSampleError) as info:
            read_dl_dataset(path)
        assert str(info.value) in skipped.values()  # the first bad label image, as the skip names it
        return
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DLDataWarning)
            data = read_dl_dataset(path)
    assert len(data) == len(good) + len(bad) and data.skipped_samples == []
    errors = 0
    for i in range(len(data)):
        if data.image_path(i) not in skipped:
            data[i]
            continue
        with pytest.raises(DLSampleError) as info:
            data[i]
        assert str(info.value) == skipped[data.image_path(i)]
        errors += 1
    assert errors == len(bad)


def make_model(model_type: str, class_ids):
    common = dict(image_dimensions=[16, 16, 3], batch_size=2, learning_rate=0.01, seed=0, class_ids=class_ids)
    if model_type == "detection":
        return dlbatch.create_dl_model("detection", backbone="compact", capacity="low", min_level=2, max_level=3,
                                       anchor_num_subscales=1, anchor_aspect_ratios=[1.0], instance_type="rectangle1",
                                       **common)
    return dlbatch.create_dl_model(model_type, backbone="compact", **common)


@pytest.mark.parametrize("fmt", ["classification", "coco", "segmentation", "halcon"])
def test_a_model_trains_on_what_is_left(tmp_path, fmt):
    path, _, _ = FORMATS[fmt](tmp_path)
    data, _ = read_skipping(path)
    model = make_model(data.model_type, data.class_ids)
    before = model.state_dict()
    result = dlbatch.train_dl_model(model, data, epochs=1, progress=False)
    assert result["final_epoch"] == 1, result
    assert result["history"][0]["step"] == 1 and all(np.isfinite(list(result["history"][0]["losses"].values())))
    after = model.state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # a step was taken


def test_the_remaining_samples_keep_their_splits(tmp_path):
    path, _, _ = halcon_json(tmp_path)
    data, _ = read_skipping(path)
    assert [data.annotations(i)["split"] for i in range(len(data))] == ["train", "train", "validation"]
    assert len(data.split("train")) == 2 and len(data.split("validation")) == 1
    assert data.split("train").skipped_samples == data.skipped_samples  # views keep what was skipped


def test_the_pixel_limit_of_the_environment_applies_to_the_check(tmp_path, monkeypatch):
    save(tmp_path / "c" / "small.png", pixels(H, W, seed=1))
    big = save(tmp_path / "c" / "big.png", pixels(40, 40, seed=2))
    monkeypatch.setenv("DLBATCH_MAX_IMAGE_PIXELS", "1000")
    data, caught = read_skipping(tmp_path)
    assert len(data) == 1 and data.skipped_samples[0][0] == big
    assert f"{big}: the image declares 40 x 40 pixels, more than the limit of 1000" in str(caught[0].message)


def test_every_bad_sample_is_an_error_that_lists_them(tmp_path):
    for name in BAD_IMAGES:
        write_bad(tmp_path / "only" / name)
    with pytest.raises(DLError, match=rf"none of its {len(BAD_IMAGES)} samples can be read") as info:
        read_skipping(tmp_path)
    for name in BAD_IMAGES:
        assert str(tmp_path / "only" / name) in str(info.value)


def test_a_long_list_is_cut_after_the_first_twenty(tmp_path):
    save(tmp_path / "c" / "good.png", pixels(H, W))
    for k in range(25):
        (tmp_path / "c" / f"bad{k:02d}.png").write_bytes(b"not a png")
    data, caught = read_skipping(tmp_path)
    lines = str(caught[0].message).splitlines()
    assert lines[0].startswith("skipped 25 of 26 samples")
    assert len(lines) == 1 + 20 + 1 and lines[-1].strip() == "and 5 more"
    assert [p.name for p, _ in data.skipped_samples] == [f"bad{k:02d}.png" for k in range(25)]  # in order


def test_the_check_decodes_each_file_once_and_converts_nothing(tmp_path, monkeypatch):
    path, bad, good = segmentation_folder(tmp_path)
    opened = []
    original = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(Path(fp)) or original(fp, *a, **k))
    monkeypatch.setattr(dataset_module, "read_image", lambda *a, **k: pytest.fail("read_image converts"))
    read_skipping(path)
    image_files = sorted((tmp_path / "images").iterdir())
    label_files = [tmp_path / "labels" / f"{p.stem}.png" for p in image_files]
    assert sorted(opened) == sorted(image_files + [f for f, i in zip(label_files, image_files)
                                                   if i not in bad])  # a bad image's label is not opened


@pytest.mark.parametrize("fmt, options", [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}),
                                          ("JPEG", {"subsampling": 0})])
def test_the_check_fails_exactly_where_reading_the_image_fails(tmp_path, fmt, options):
    """check_image (a JPEG decoded at 1/8 scale, nothing converted) against read_image (a full
    decode and conversion) on cut and byte-mutated files: the same error or the same size."""
    buffer = io.BytesIO()
    Image.fromarray(pixels(60, 80, seed=3) // 4 + 100).save(buffer, format=fmt, **options)
    data, rng, failures = buffer.getvalue(), np.random.default_rng(4), 0
    for k in range(60):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            mutated[int(rng.integers(0, len(mutated)))] = int(rng.integers(0, 256))
        if k % 3 == 0:
            mutated = mutated[: int(rng.integers(1, len(mutated)))]
        path = tmp_path / f"m{k}.img"
        path.write_bytes(bytes(mutated))
        try:
            want = read_image(path).shape[:2]
        except DLSampleError as exc:
            failures += 1
            with pytest.raises(DLSampleError) as info:
                check_image(path)
            assert str(info.value) == str(exc)
        else:
            assert check_image(path) == want
    assert failures >= 5 and (fmt == "PNG" or failures <= 55)  # both outcomes tried (a PNG's CRCs fail all)


def test_without_bad_files_nothing_is_skipped_and_nothing_warns(tmp_path):
    save(tmp_path / "c" / "a.png", pixels(H, W))
    data, caught = read_skipping(tmp_path)
    assert caught == [] and len(data) == 1 and data.skipped_samples == []


# -- the command line -------------------------------------------------------------------------
def invoke(*args):
    from dlbatch.cli.app import app
    return CliRunner().invoke(app, [str(a) for a in args])


def test_data_info_counts_and_lists_the_skipped_samples(tmp_path):
    path, bad, good = coco_json(tmp_path)
    plain = invoke("data", "info", path, "--json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["num_samples"] == len(good) + len(bad) and "skipped" not in plain.stdout
    result = invoke("data", "info", path, "--json", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["num_samples"] == len(good) and facts["skipped"] == len(bad)
    assert {Path(s["image"]) for s in facts["skipped_samples"]} == set(bad)
    assert result.stderr.startswith(f"warning: skipped {len(bad)} of {len(good) + len(bad)} samples of {path}")
    assert all(str(f) in result.stderr for f in bad)
    table = invoke("data", "info", path, "--skip-bad-images")
    assert re.search(rf"^skipped\s+{len(bad)}$", table.stdout, re.M), table.stdout


def test_train_skips_with_the_flag_and_stops_naming_the_file_without_it(tmp_path):
    path, bad, good = classification_folder(tmp_path / "data")
    for k in range(4):  # enough for an 80/20 split with a full batch
        save(tmp_path / "data" / "ok" / f"more{k}.png", pixels(H, W, seed=30 + k))
    model = make_model("classification", [0, 1])
    dlbatch.write_dl_model(model, tmp_path / "m.onnx")
    failed = invoke("train", tmp_path / "m.onnx", path, "--out", tmp_path / "a", "--epochs", 1)
    assert failed.exit_code == 2 and any(str(f) in failed.stderr for f in bad), failed.output
    result = invoke("train", tmp_path / "m.onnx", path, "--out", tmp_path / "b", "--epochs", 1, "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert f"warning: skipped {len(bad)} of {len(bad) + 6} samples" in result.stderr
    assert "5 training and 1 validation samples" in result.stdout
    assert (tmp_path / "b" / "final.onnx").is_file()


def test_distributed_workers_get_the_flag():
    from dlbatch.cli.train_cmd import worker_args
    args = worker_args("m.onnx", "data", "run", None, 1, 42, 1, None, None, None, None, "cpu", False, True)
    assert args[-1] == "--skip-bad-images"
    assert "--skip-bad-images" not in worker_args("m.onnx", "data", "run", None, 1, 42, 1, None, None, None, None,
                                                  "cpu", False)


def test_evaluate_skips_with_the_flag_and_equals_the_library_on_the_good_samples(tmp_path):
    path, bad, good = classification_folder(tmp_path / "data")
    model = make_model("classification", [0, 1])
    dlbatch.write_dl_model(model, tmp_path / "m.onnx")
    failed = invoke("evaluate", tmp_path / "m.onnx", path, "--json")
    assert failed.exit_code == 2 and any(str(f) in failed.stderr for f in bad), failed.output
    result = invoke("evaluate", tmp_path / "m.onnx", path, "--json", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert f"warning: skipped {len(bad)} of {len(bad) + len(good)} samples" in result.stderr
    kept, _ = read_skipping(path)
    want = dlbatch.evaluate_dl_model(model, dlbatch.preprocess_dl_samples([kept[i] for i in range(len(kept))], model))
    got = json.loads(result.stdout)
    assert got["top1_error"] == pytest.approx(float(want["top1_error"]), abs=1e-12)
