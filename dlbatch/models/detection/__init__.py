"""The detection model type (RetinaNet-style), split the torchvision way into small units:
boxes (geometry, IoU), anchors, matcher, box_coder, network (pyramid and heads), targets,
postprocess (+ nms), coco_eval, detection_params; model_type ties them together."""
from __future__ import annotations

from ...core.hookspecs import hookimpl
from .detection_params import detection_params_from_samples
from .model_type import Detection

__all__ = ["Detection", "detection_params_from_samples"]


@hookimpl
def dlbatch_register_model_types(register):
    register(Detection())
