"""The segmentation overlay (`dlbatch apply --overlay`): each predicted class blended in its
colour over the raw image, region borders in the full colour; background pixels untouched."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..core.errors import DLParamError
from ..core.preprocess import resize_nearest
from ..visual.draw import blend_classes, to_rgb_uint8
from ..visual.palette import class_index_colours

ALPHA = 0.45  # weight of the class colour; the image's own edges stay visible under it


def background_class_ids(hp: Mapping[str, Any]) -> set[int]:
    """Classes left uncoloured: `ignore_class_ids`, classes named "background" (any case), and
    when no class is so named class id 0 (the background of HALCON's examples and of
    dlbatch.data's synthetic scenes), if it is one of several class_ids."""
    ids = [int(c) for c in hp.get("class_ids") or []]
    names = list(hp.get("class_names") or [])
    skip = {int(c) for c in hp.get("ignore_class_ids") or []}
    named = {cid for cid, name in zip(ids, names) if str(name).strip().lower() == "background"}
    if named:
        return skip | named
    if 0 in ids and len(ids) > 1:
        skip.add(0)
    return skip


def draw_segmentation_overlay(image, result: Mapping[str, Any], hp: Mapping[str, Any]) -> np.ndarray:
    """RGB uint8 H x W x 3: `image` with the result's `segmentation_image` blended over it. A
    class map of another size (e.g. at the network's input size) is resized to the image
    (nearest neighbour) first."""
    rgb = to_rgb_uint8(image)
    if "segmentation_image" not in result:
        raise DLParamError("a segmentation overlay needs the apply_dl_model result key 'segmentation_image'; "
                           "pass one result of a segmentation model")
    class_map = np.asarray(result["segmentation_image"])
    if class_map.ndim == 3 and class_map.shape[2] == 1:
        class_map = class_map[:, :, 0]
    if class_map.ndim != 2:
        raise DLParamError(f"'segmentation_image' must be H x W class ids, got shape {class_map.shape}")
    if class_map.shape != rgb.shape[:2]:
        class_map = resize_nearest(class_map, *rgb.shape[:2])
    skip = background_class_ids(hp)
    colours = {cid: c for cid, c in class_index_colours(hp.get("class_ids") or []).items() if cid not in skip}
    return blend_classes(rgb, class_map, colours, ALPHA)
