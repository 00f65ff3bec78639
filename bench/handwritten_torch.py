"""The reference the benchmarks compare against: a plain hand-written PyTorch training loop
(nn.Module of the same layers, F.cross_entropy, HALCON-form SGD with torch._foreach ops).

Each backbone is a list of stages, one per feature map dlbatch's backbone returns
(dlbatch/models/backbones.py); the classifier runs them in a row and adds GAP + fully connected,
the segmentation network reads the maps at the strides dlbatch's segmentation model reads
(dlbatch/models/segmentation.py) into the same top-down decoder (dlbatch/models/decoder.py),
and the detection network (`Detector`) puts dlbatch's feature pyramid and RetinaNet heads
(dlbatch/models/detection/network.py) on the maps, trained with torchvision's sigmoid focal
loss and smooth-L1 box loss (`DetectionLoop`)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def compact_stages(channels: int) -> tuple[list[nn.Module], tuple[int, ...], tuple[int, ...]]:
    """dlbatch's `compact` backbone: (stages, their strides, their channels)."""
    return ([nn.Sequential(*conv_bn_relu(channels, 32), *conv_bn_relu(32, 32)),
             nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(32, 64)),
             nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(64, 128))],
            (1, 2, 4), (32, 64, 128))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


def resnet18_stages(channels: int) -> tuple[list[nn.Module], tuple[int, ...], tuple[int, ...]]:
    """dlbatch's `resnet18` backbone: the stem (stride 2), then the four stages of two basic
    blocks (strides 4..32; the 3x3/2 max-pool opens the first)."""
    stages = [nn.Sequential(nn.Conv2d(channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU())]
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        blocks = [nn.MaxPool2d(3, 2, 1)] if stage == 0 else []
        for block in range(2):
            blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and block == 0 else 1))
            cin = cout
        stages.append(nn.Sequential(*blocks))
    return stages, (2, 4, 8, 16, 32), (64, 64, 128, 256, 512)


BACKBONES = {"compact": compact_stages, "resnet18": resnet18_stages}


def classifier(backbone: str, channels: int, k: int) -> nn.Module:
    """The backbone's layers in a row + GAP + fully connected head."""
    stages, _, widths = BACKBONES[backbone](channels)
    return nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], k))


# the strides the segmentation decoder reads from each backbone (BUILTIN_STRIDES in dlbatch)
SEGMENTATION_STRIDES = {"compact": (1, 2, 4), "resnet18": (4, 8, 16, 32)}


class Segmenter(nn.Module):
    """Backbone + dlbatch's top-down decoder: from the deepest map up, a 1x1 lateral conv (with
    bias), bilinear x2 upsampling (half-pixel centres), + the 1x1 lateral of the shallower map,
    3x3 conv-BN-ReLU refine; a 1x1 classifier conv (bias, weights std 0.01) at the shallowest
    tapped stride, then bilinear upsampling to the input size."""

    def __init__(self, backbone: str, channels: int, k: int):
        super().__init__()
        stages, strides, widths = BACKBONES[backbone](channels)
        taps = SEGMENTATION_STRIDES[backbone]
        self.stages = nn.ModuleList(stages)
        self.taps = [strides.index(s) for s in taps]
        tapped = [widths[i] for i in self.taps]
        width = max(32, min(128, tapped[0]))  # decoder_width in dlbatch
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in tapped)
        self.refines = nn.ModuleList(nn.Sequential(*conv_bn_relu(width, width)) for _ in tapped[:-1])
        self.classifier = nn.Conv2d(width, k, 1)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)
        self.factors = [b // a for a, b in zip(taps, taps[1:])]
        self.out_stride = taps[0]

    def forward(self, x):
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        maps = [maps[i] for i in self.taps]
        y = self.laterals[-1](maps[-1])
        for i in reversed(range(len(maps) - 1)):
            y = F.interpolate(y, scale_factor=self.factors[i], mode="bilinear", align_corners=False)
            y = self.refines[i](y + self.laterals[i](maps[i]))
        y = self.classifier(y)
        if self.out_stride != 1:
            y = F.interpolate(y, scale_factor=self.out_stride, mode="bilinear", align_corners=False)
        return y


# capacity -> (pyramid and head width, 3x3 conv + ReLU layers per head), as dlbatch
DETECTION_CAPACITY = {"high": (128, 4), "medium": (64, 2), "low": (32, 1)}


class Detector(nn.Module):
    """Backbone + feature pyramid + RetinaNet heads shared across levels, as dlbatch builds them.

    Pyramid on levels min_level..max_level (stride 2^level): a 1x1 lateral conv (bias) on each
    backbone map inside the range, from the deepest up: nearest x2 upsampling + add, then a
    3x3 output conv (bias) per level; levels deeper than the backbone: stride-2 3x3 convs from
    the deepest pyramid map (ReLU before all but the first). Heads: `depth` 3x3 conv (bias) +
    ReLU layers and a final 3x3 conv to A x K class logits / A x box_params box deltas (4 for
    rectangle1, 5 for rectangle2), the same modules on every level; outputs flattened in
    (level, y, x, anchor) order and concatenated: (N, anchors, K) and (N, anchors, box_params).
    Only the backbone stages the pyramid reads are built (resnet18 with max_level 4 stops after
    its stride-16 stage)."""

    def __init__(self, backbone: str, channels: int, k: int, capacity: str = "medium", min_level: int = 2,
                 max_level: int = 4, anchors_per_location: int = 9, box_params: int = 4):
        super().__init__()
        stages, strides, widths = BACKBONES[backbone](channels)
        levels = [int(round(math.log2(s))) for s in strides]
        inner = [lvl for lvl in range(min_level, max_level + 1) if lvl in levels]
        last = levels.index(max(inner)) if inner else len(stages) - 1
        self.stages = nn.ModuleList(stages[:last + 1])
        self.taps = {lvl: levels.index(lvl) for lvl in inner}  # level -> stage index
        width, depth = DETECTION_CAPACITY[capacity]
        self.lateral = nn.ModuleDict({str(lvl): nn.Conv2d(widths[i], width, 1) for lvl, i in self.taps.items()})
        self.out = nn.ModuleDict({str(lvl): nn.Conv2d(width, width, 3, 1, 1) for lvl in inner})
        top = max(inner) if inner else levels[last]
        cin = width if inner else widths[last]
        self.extra = nn.ModuleDict()
        for lvl in range(top + 1, max_level + 1):
            self.extra[str(lvl)] = nn.Conv2d(cin, width, 3, 2, 1)
            cin = width
        self.min_level, self.max_level = min_level, max_level
        self.k, self.box_params = k, box_params

        def head(outputs_per_anchor, bias):
            convs = nn.ModuleList(nn.Conv2d(width, width, 3, 1, 1) for _ in range(depth))
            final = nn.Conv2d(width, anchors_per_location * outputs_per_anchor, 3, 1, 1)
            for conv in [*convs, final]:  # RetinaNet's initialisation
                nn.init.normal_(conv.weight, 0.0, 0.01)
                nn.init.constant_(conv.bias, 0.0)
            nn.init.constant_(final.bias, bias)
            return convs, final

        self.class_convs, self.class_out = head(k, -math.log((1 - 0.01) / 0.01))
        self.box_convs, self.box_out = head(box_params, 0.0)

    def pyramid(self, x) -> list[torch.Tensor]:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        levels, top = {}, None
        for lvl in sorted(self.taps, reverse=True):
            lateral = self.lateral[str(lvl)](maps[self.taps[lvl]])
            top = lateral if top is None else lateral + F.interpolate(top, scale_factor=2, mode="nearest")
            levels[lvl] = self.out[str(lvl)](top)
        source = levels[max(levels)] if levels else maps[-1]
        for i, (lvl, conv) in enumerate(self.extra.items()):
            source = conv(source if i == 0 else F.relu(source))
            levels[int(lvl)] = source
        return [levels[lvl] for lvl in range(self.min_level, self.max_level + 1)]

    @staticmethod
    def _head(maps, convs, final, per_anchor):
        out = []
        for y in maps:
            for conv in convs:
                y = F.relu(conv(y))
            y = final(y)
            out.append(y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, per_anchor))
        return torch.cat(out, 1)

    def forward(self, x):
        maps = self.pyramid(x)
        return (self._head(maps, self.class_convs, self.class_out, self.k),
                self._head(maps, self.box_convs, self.box_out, self.box_params))


NETWORKS = {"classification": classifier, "segmentation": Segmenter, "detection": Detector}


class HandwrittenLoop:
    """One HALCON-form SGD step: v = mu v - lr g; w = w + v (weight prior on rank >= 2).

    The velocity is created at the first step, as torch.optim.SGD creates its momentum
    buffers (and as dlbatch creates its solver state), so that the benchmark charges the
    solver state to the training steps of every implementation alike. The loss is
    F.cross_entropy: over the batch for classification, over every pixel for segmentation
    (labels N x H x W); DetectionLoop overrides `loss`."""

    def __init__(self, backbone: str, channels: int, k: int, lr=0.01, mu=0.9, weight_prior=1e-4,
                 device="cpu", model: str = "classification", **network_options):
        self.net = NETWORKS[model](backbone, channels, k, **network_options).to(device)
        self.params = [p for p in self.net.parameters()]
        self.decayed = [p for p in self.params if p.dim() >= 2]
        self.velocity = None
        self.lr, self.mu, self.wp = lr, mu, weight_prior

    def loss(self, outputs, labels) -> torch.Tensor:
        return F.cross_entropy(outputs, labels)

    def step(self, images: torch.Tensor, labels) -> float:
        self.net.train()
        loss = self.loss(self.net(images), labels)
        grads = torch.autograd.grad(loss, self.params)
        grads = [g + self.wp * p if p.dim() >= 2 else g for g, p in zip(grads, self.params)]
        with torch.no_grad():
            if self.velocity is None:  # v = mu * 0 - lr * g
                self.velocity = torch._foreach_mul(grads, -self.lr)
            else:
                torch._foreach_mul_(self.velocity, self.mu)
                torch._foreach_add_(self.velocity, grads, alpha=-self.lr)
            torch._foreach_add_(self.params, self.velocity)
        return loss.item()

    @torch.no_grad()
    def infer(self, images: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return self.net(images)


def sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss (reduction 'sum'), written out (no torchvision here)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * loss).sum()


class DetectionTargets:
    """The training targets of a batch by dlbatch's own numpy code (anchors, matching, box
    coding: dlbatch/models/detection/targets.py), as tensors: class index per anchor (N, A)
    (-1 background, -2 ignored), box deltas (N, A, P), and max(1, positive anchors). Both the
    hand-written loop and dlbatch compute them inside every timed training step.

    rectangle1 (angles None): P = 4. rectangle2 (`angles` the anchor angles in radians): the
    oriented anchors (aspect ratio length1 / length2, once per angle), matched with the exact
    rotated IoU, P = 5 (the angle delta last, wrapped as `ignore_direction` says)."""

    def __init__(self, height: int, width: int, min_level=2, max_level=4, num_subscales=3,
                 aspect_ratios=(1.0, 2.0, 0.5), device="cpu", angles=None, ignore_direction=True):
        from dlbatch.models.detection.anchors import generate_anchors, generate_oriented_anchors
        from dlbatch.models.detection.boxes import geometry_for
        if angles is None:
            self.anchors = generate_anchors(height, width, min_level, max_level, num_subscales, list(aspect_ratios))
            self.geometry = geometry_for("rectangle1")
        else:
            self.anchors = generate_oriented_anchors(height, width, min_level, max_level, num_subscales,
                                                     list(aspect_ratios), list(angles))
            self.geometry = geometry_for("rectangle2", ignore_direction=ignore_direction)
        self.device = device

    def __call__(self, boxes, labels):
        """boxes: per image (n_i, P) in input pixels (rectangle1: row1, col1, row2, col2;
        rectangle2: row, col, phi, length1, length2); labels: per image (n_i,) class indices
        0..K-1."""
        from dlbatch.models.detection.targets import encode_targets
        t = encode_targets(self.anchors, boxes, labels, self.geometry, "float32")
        return (torch.from_numpy(t.classes).to(self.device), torch.from_numpy(np.asarray(t.deltas)).to(self.device),
                t.normalizer)


class DetectionLoop(HandwrittenLoop):
    """HandwrittenLoop for `Detector`: labels are DetectionTargets' (classes, deltas,
    normaliser); the loss is torchvision RetinaNet's: sigmoid focal loss (alpha 0.25, gamma 2)
    over the anchors that are not ignored plus smooth-L1 (beta 0.11) over the positive anchors'
    deltas, each summed over the batch and divided by max(1, positive anchors in the batch).
    `terms` keeps the last step's (focal, smooth-L1) values. For rectangle2 the Detector gets
    box_params=5 and the smooth-L1 covers the angle delta as the fifth column, as dlbatch's
    Huber term does."""

    def __init__(self, backbone: str, channels: int, k: int, **options):
        super().__init__(backbone, channels, k, model="detection", **options)
        self.terms = (0.0, 0.0)

    def loss(self, outputs, labels):
        logits, deltas = outputs
        classes, target_deltas, normalizer = labels
        valid = classes != -2
        one_hot = (classes[valid].unsqueeze(1) == torch.arange(logits.shape[-1], device=classes.device))
        focal = sigmoid_focal_loss(logits[valid], one_hot.to(logits.dtype)) / normalizer
        positive = classes >= 0
        box = F.smooth_l1_loss(deltas[positive], target_deltas[positive], beta=0.11, reduction="sum") / normalizer
        self.terms = (focal.detach(), box.detach())
        return focal + box
