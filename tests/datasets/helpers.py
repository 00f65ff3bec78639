"""Small files for the dataset tests, written with Pillow directly (not with dlbatch's writers),
so that a reader is checked against files it did not make itself."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def pixels(height, width, channels=3, seed=0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def dump(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def coco_file(root: Path, images, annotations, categories, name="ann.json") -> Path:
    """images: (id, file_name, height, width) with the image files written as random PNGs."""
    entries = []
    for k, (image_id, file_name, height, width) in enumerate(images):
        save(root / file_name, pixels(height, width, seed=k))
        entries.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
    return dump(root / name, {"images": entries, "annotations": annotations, "categories": categories})
