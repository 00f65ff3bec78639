"""Writing raw samples (uint8 images with SPEC labels) in the formats read_dl_dataset reads,
as lossless PNGs, so that reading them back gives the same images and labels.

Each writer takes the samples in order; sample i's image is named by its index (000000.png, ...),
and returns the path to pass to read_dl_dataset.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DLParamError
from .boxes import box_keys, rbox_field, rectangle1_to_coco, rectangle2_extent
from .images import write_image, write_label_image
from .jsonfile import write_json
from .segmentation_folder import CLASSES_FILE


def _names(n: int) -> list[str]:
    width = max(6, len(str(max(n - 1, 0))))
    return [f"{i:0{width}d}.png" for i in range(n)]


def write_classification_folder(root: Path, samples, class_names) -> Path:
    """root/<class name>/<index>.png; image_label_id must be the position of its class name in
    sorted order, as the reader assigns ids (class_names[id] is the name of class id)."""
    class_names = [str(n) for n in class_names]
    if class_names != sorted(class_names) or len(set(class_names)) != len(class_names):
        raise DLParamError(f"a class folder dataset gives class id k to the k-th name in sorted order; "
                           f"class_names must be unique and sorted, got {class_names}")
    for name in class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for sample, file_name in zip(samples, _names(len(samples))):
        write_image(root / class_names[int(sample["image_label_id"])] / file_name, sample["image"])
    return root


def write_coco(root: Path, samples, class_ids, class_names, instance_type: str) -> Path:
    """root/images/<index>.png and root/annotations.json (image ids and annotation ids from 1);
    rectangle2 boxes in the "rbox" extension field, their enclosing box as bbox."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (sample, file_name) in enumerate(zip(samples, _names(len(samples)))):
        height, width = np.shape(sample["image"])[:2]
        write_image(root / "images" / file_name, sample["image"])
        images.append({"id": i + 1, "file_name": f"images/{file_name}", "width": width, "height": height})
        boxes = np.stack([np.asarray(sample[k], np.float64) for k in box_keys(instance_type)], axis=1)
        for box, cid in zip(boxes, np.asarray(sample["bbox_label_id"]).tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cid),
                                "iscrowd": 0, **_coco_box(box, instance_type)})
    categories = [{"id": int(c), "name": str(n)} for c, n in zip(class_ids, class_names)]
    path = root / "annotations.json"
    write_json(path, {"images": images, "annotations": annotations, "categories": categories})
    return path


def _coco_box(box, instance_type) -> dict:
    if instance_type == "rectangle1":
        bbox = rectangle1_to_coco(*box)
        return {"bbox": bbox, "area": bbox[2] * bbox[3]}
    row1, col1, row2, col2 = rectangle2_extent(*box)
    return {"bbox": rectangle1_to_coco(row1, col1, row2, col2), "area": float(4 * box[3] * box[4]),
            "rbox": rbox_field(*box)}


def write_segmentation_folder(root: Path, samples, class_ids, class_names) -> Path:
    """root/images/<index>.png, root/labels/<index>.png and root/classes.json."""
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for sample, file_name in zip(samples, _names(len(samples))):
        write_image(root / "images" / file_name, sample["image"])
        write_label_image(root / "labels" / file_name, sample["segmentation_image"])
    write_json(root / CLASSES_FILE, {"class_ids": [int(c) for c in class_ids],
                                     "class_names": [str(n) for n in class_names]})
    return root


def write_halcon_json(root: Path, samples, class_ids, class_names, model_type: str,
                      instance_type: str | None = None) -> Path:
    """root/images/, root/labels/ (segmentation) and root/dataset.json, a HALCON DLDataset
    dictionary; a sample's "split" key, when it has one, is kept."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    data = {"class_ids": [int(c) for c in class_ids], "class_names": [str(n) for n in class_names],
            "image_dir": "images", "samples": []}
    if model_type == "segmentation":
        (root / "labels").mkdir(exist_ok=True)
        data["segmentation_dir"] = "labels"
    for i, (sample, file_name) in enumerate(zip(samples, _names(len(samples)))):
        write_image(root / "images" / file_name, sample["image"])
        entry = {"image_file_name": file_name, "image_id": i}
        if sample.get("split") is not None:
            entry["split"] = str(sample["split"])
        if model_type == "classification":
            entry["image_label_id"] = int(sample["image_label_id"])
        elif model_type == "detection":
            for key in box_keys(instance_type):
                entry[key] = np.asarray(sample[key], np.float64).tolist()
            entry["bbox_label_id"] = np.asarray(sample["bbox_label_id"]).astype(int).tolist()
        else:
            write_label_image(root / "labels" / file_name, sample["segmentation_image"])
            entry["segmentation_file_name"] = file_name
        data["samples"].append(entry)
    path = root / "dataset.json"
    write_json(path, data)
    return path
