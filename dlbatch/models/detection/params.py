"""The detection model's parameters (SPEC section 7). Those that shape the network (levels,
anchors, capacity, instance type) are fixed when the model is created."""
from __future__ import annotations

from ...core.params import ParamSpec, all_of, nonempty, non_negative, positive

NAME = "detection"


def _unit(x) -> str | None:
    return None if 0 <= x <= 1 else "must be in [0, 1]"


def _positive_list(v) -> str | None:
    return None if all(x > 0 for x in v) else "every entry must be > 0"


SPECS = [
    ParamSpec("backbone", "str", readonly=True, doc="the backbone the model was built on", model_types=(NAME,)),
    ParamSpec("instance_type", "str", "rectangle1", "box geometry: axis-parallel rectangle1 or oriented rectangle2",
              choices=("rectangle1", "rectangle2"), fixed=True, model_types=(NAME,)),
    ParamSpec("anchor_angles", "float_list", [0.0], "anchor orientations in radians (rectangle2)", check=nonempty,
              fixed=True, model_types=(NAME,)),
    ParamSpec("ignore_direction", "bool", True, "rectangle2: phi and phi + pi are the same box", fixed=True,
              model_types=(NAME,)),
    ParamSpec("class_ids_no_orientation", "int_list", [], "rectangle2: classes predicted and evaluated as "
              "axis-parallel boxes (phi = 0)", fixed=True, model_types=(NAME,)),
    ParamSpec("min_level", "int", 2, "shallowest pyramid level (stride 2^level)",
              check=lambda v: None if 0 <= v <= 12 else "must be in 0..12 (stride 2^level)", fixed=True,
              model_types=(NAME,)),
    ParamSpec("max_level", "int", 4, "deepest pyramid level (stride 2^level)",
              check=lambda v: None if 0 <= v <= 12 else "must be in 0..12 (stride 2^level)", fixed=True,
              model_types=(NAME,)),
    ParamSpec("anchor_num_subscales", "int", 3, "anchor scales per octave",
              check=lambda v: None if 1 <= v <= 16 else "must be in 1..16", fixed=True,
              model_types=(NAME,)),
    ParamSpec("anchor_aspect_ratios", "float_list", [1.0, 2.0, 0.5], "anchor height/width ratios",
              check=all_of(nonempty, _positive_list), fixed=True, model_types=(NAME,)),
    ParamSpec("capacity", "str", "medium", "width and depth of the pyramid and heads",
              choices=("high", "medium", "low"), fixed=True, model_types=(NAME,)),
    ParamSpec("class_heads_weight", "float", 1.0, "weight of the focal loss term", check=non_negative,
              model_types=(NAME,)),
    ParamSpec("bbox_heads_weight", "float", 1.0, "weight of the Huber loss term", check=non_negative,
              model_types=(NAME,)),
    ParamSpec("max_overlap", "float", 0.5, "IoU above which per-class NMS suppresses a box", check=_unit,
              model_types=(NAME,)),
    ParamSpec("max_overlap_class_agnostic", "float", 1.0, "IoU above which class-agnostic NMS suppresses a box "
              "(1.0: off)", check=_unit, model_types=(NAME,)),
    ParamSpec("min_confidence", "float", 0.5, "lowest confidence of a returned detection", check=_unit,
              model_types=(NAME,)),
    ParamSpec("max_num_detections", "int", 100, "most detections per image", check=positive, model_types=(NAME,)),
]
