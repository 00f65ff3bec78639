"""Pictures of results for people: overlays drawn on raw images and evaluation plots.

Small Pillow helpers shared by the model types' `draw_overlay` and `evaluation_plots` hooks
(`dlbatch apply --overlay`, `dlbatch evaluate --plots`). Pure numpy + Pillow; matplotlib is
used for the confusion matrix when it is installed.
"""
from __future__ import annotations

from .confusion_plot import write_confusion_matrix_png
from .draw import (blend_classes, draw_arrow, draw_box_outline, draw_label, font_for, line_width_for,
                   oriented_box_band, paint_mask, to_pil, to_rgb_uint8)
from .palette import class_colour_rgb, class_index_colours, text_colour_on

__all__ = ["blend_classes", "class_colour_rgb", "class_index_colours", "draw_arrow", "draw_box_outline",
           "draw_label", "font_for", "line_width_for", "oriented_box_band", "paint_mask", "text_colour_on",
           "to_pil", "to_rgb_uint8", "write_confusion_matrix_png"]
