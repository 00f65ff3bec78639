"""Detection datasets as a COCO annotation file (JSON: images, annotations, categories).

- Images: `file_name` relative to the JSON file's folder (or to `image_dir`); `width` and
  `height`, when given, are checked against the image when it is read and bound the boxes.
  Samples keep the order of the "images" list; an image without annotations has no boxes.
- Categories: class_ids = the category ids (sorted), class_names = their names.
- Annotations: `bbox` = [x, y, w, h] in COCO's pixel convention (the image spans [0, W] x
  [0, H]); see datasets.boxes for the exact mapping to bbox_row1 = y - 0.5 ... bbox_col2 =
  x + w - 0.5. Crowd annotations (`iscrowd` = 1) are skipped: a box model cannot learn them.
- rectangle2 extension: an annotation may carry

      "rbox": {"row": r, "col": c, "phi": p, "length1": l1, "length2": l2}

  in HALCON's rectangle2 convention (pixel-centre coordinates as dlbatch, phi in radians
  counter-clockwise from the column axis, length1/length2 half lengths along d1 = (-sin phi,
  cos phi) and d2 = (cos phi, sin phi)). A file whose annotations carry "rbox" is a
  rectangle2 dataset (then every annotation must carry it and its `bbox`, the enclosing
  axis-parallel box for other COCO tools, is not read); otherwise it is rectangle1.

Errors name the JSON file and the annotation: an unknown category or image id, a missing or
malformed bbox/rbox, an empty box, a box reaching outside its image by more than
`border_tolerance` pixels, and (with check_files) an image file that does not exist.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DLError, DLSampleError
from .boxes import box_keys, check_boxes, coco_to_rectangle1, rbox_values
from .dataset import DLDataset, Record
from .jsonfile import integer, load_json, require


def read_coco(path, data=None, *, image_dir=None, border_tolerance: float = 1.0,
              check_files: bool = True) -> DLDataset:
    """The COCO annotation file `path` as a lazy detection DLDataset (see the module docstring).

    Args:
        path: the COCO JSON file.
        data: its content when already loaded (else it is read).
        image_dir: the folder `file_name` is relative to (default: the JSON file's folder).
        border_tolerance: how far (pixels) a box may reach outside its image.
        check_files: check that every image file exists (a stat each) now.

    Returns:
        A DLDataset of model type "detection" (rectangle1, or rectangle2 with "rbox").

    Raises:
        DLError: not a COCO object, no categories, or duplicate image or category ids.
        DLSampleError: an invalid image entry or annotation, or (with check_files) a missing
            image file; the message names the file and the entry.

    Examples:
        >>> import json
        >>> import numpy as np
        >>> from dlbatch.datasets.images import write_image
        >>> write_image("scene.png", np.zeros((20, 30, 3), np.uint8))
        >>> coco = {"images": [{"id": 1, "file_name": "scene.png", "width": 30, "height": 20}],
        ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 5]}],
        ...         "categories": [{"id": 7, "name": "screw"}]}
        >>> _ = Path("coco.json").write_text(json.dumps(coco))
        >>> data = read_coco("coco.json")
        >>> data.class_names, data.annotations(0)["bbox_row1"].tolist()
        (['screw'], [2.5])
    """
    path = Path(path)
    data = load_json(path, "COCO annotation file") if data is None else data
    if not isinstance(data, dict):
        raise DLError(f"{path}: a COCO file is a JSON object with 'images', 'annotations' and 'categories'")
    where = str(path)
    class_ids, class_names = _categories(require(data, "categories", where, list), where)
    images = _images(require(data, "images", where, list), where)
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise DLError(f"{path}: 'annotations' must be a list")
    instance_type = "rectangle2" if any(isinstance(a, dict) and "rbox" in a for a in annotations) else "rectangle1"
    boxes = {image_id: [] for image_id in images}
    known = set(class_ids)
    for k, ann in enumerate(annotations):
        found = _annotation(ann, k, where, instance_type, images, known)
        if found is not None:
            boxes[found[0]].append(found[1:])
    base = Path(image_dir) if image_dir is not None else path.parent
    records = [_record(image_id, entry, boxes[image_id], base, instance_type, where, border_tolerance, check_files)
               for image_id, entry in images.items()]
    return DLDataset(records, model_type="detection", class_ids=class_ids, class_names=class_names,
                     instance_type=instance_type, source=path, border_tolerance=border_tolerance)


def _categories(categories, where):
    table = {}
    for k, cat in enumerate(categories):
        at = f"{where}: categories[{k}]"
        cid = integer(require(cat, "id", at), at, "'id'")
        if cid in table:
            raise DLError(f"{at}: category id {cid} appears twice")
        table[cid] = str(cat.get("name", cid))
    if not table:
        raise DLError(f"{where}: 'categories' is empty; list the classes as {{\"id\": ..., \"name\": ...}}")
    ids = sorted(table)
    return ids, [table[c] for c in ids]


def _images(images, where) -> dict[int, dict]:
    table = {}
    for k, im in enumerate(images):
        at = f"{where}: images[{k}]"
        image_id = integer(require(im, "id", at), at, "'id'")
        if image_id in table:
            raise DLError(f"{at}: image id {image_id} appears twice")
        name = require(im, "file_name", at, str)
        size = None
        if "width" in im or "height" in im:
            size = (integer(require(im, "height", at), at, "'height'"), integer(require(im, "width", at), at, "'width'"))
            if min(size) < 1:
                raise DLSampleError(f"{at}: width and height must be >= 1, got {size[1]} x {size[0]}")
        table[image_id] = {"file_name": name, "size": size}
    return table


def _annotation(ann, k, where, instance_type, images, known):
    """(image_id, annotation name, box values, class id), or None for a crowd annotation."""
    name = f"annotation {ann.get('id', f'#{k}')}" if isinstance(ann, dict) else f"annotations[{k}]"
    at = f"{where}: {name}"
    if not isinstance(ann, dict):
        raise DLSampleError(f"{at}: must be an object with image_id, category_id and bbox")
    if ann.get("iscrowd", 0):
        return None
    image_id = integer(require(ann, "image_id", at), at, "'image_id'")
    if image_id not in images:
        raise DLSampleError(f"{at}: image_id {image_id} is not in 'images'")
    cid = integer(require(ann, "category_id", at), at, "'category_id'")
    if cid not in known:
        raise DLSampleError(f"{at}: unknown category_id {cid}; the categories are {sorted(known)}; add the "
                            "category or fix the annotation")
    if instance_type == "rectangle2":
        if "rbox" not in ann:
            raise DLSampleError(f"{at}: has no 'rbox' although other annotations do; a rectangle2 dataset "
                                "needs it on every annotation")
        values = rbox_values(ann["rbox"], at)
    else:
        bbox = require(ann, "bbox", at, list)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise DLSampleError(f"{at}: 'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
        values = coco_to_rectangle1(bbox)
    return image_id, name, values, cid


def _record(image_id, entry, boxes, base, instance_type, where, tolerance, check_files) -> Record:
    keys = box_keys(instance_type)
    values = np.array([b[1] for b in boxes], dtype=np.float64).reshape(-1, len(keys))
    labels = {**{key: values[:, j].copy() for j, key in enumerate(keys)},
              "bbox_label_id": np.array([b[2] for b in boxes], dtype=np.int64)}
    check_boxes(labels, instance_type, f"{where}: image {image_id} ({entry['file_name']!r})", entry["size"],
                tolerance, names=[b[0] for b in boxes])
    image_path = base / entry["file_name"]
    if check_files and not image_path.is_file():
        raise DLSampleError(f"{image_path}: image file not found (image {image_id} of {where}); restore it, "
                            "fix 'file_name', or pass image_dir=")
    return Record(image_path=image_path, image_file_name=entry["file_name"], image_id=image_id,
                  labels=labels, size=entry["size"])
