"""Classic CNNs written in plain torch.nn (VGG, ResNet, MobileNetV2, MobileNetV3/EfficientNet
with squeeze-excitation, DenseNet, an hourglass with Resize and ConvTranspose, a
Softmax-terminated net, a pooled 1x1-convolution head giving N x K x 1 x 1), each exported four
ways (tests/core/pytorch_export_nets.py): read on both backends, inference equal to
onnxruntime, one training step equal on both backends with every trainable tensor moving and,
where the file keeps the module's batch norm, equal to the module's own train-mode loss."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from .pytorch_export_nets import STYLES, check_read_and_apply, check_train_step  # noqa: E402

ARCHS = ["vgg", "resnet", "mobilenetv2", "mobilenetv3_se", "densenet", "hourglass", "softmax", "pooled_conv_head"]
CASES = [(a, s) for a in ARCHS for s in STYLES]
IDS = [f"{a}-{s}" for a, s in CASES]


@pytest.mark.parametrize("arch,style", CASES, ids=IDS)
def test_reads_on_both_backends_and_equals_onnxruntime(tmp_path, arch, style):
    check_read_and_apply(arch, style, tmp_path)


@pytest.mark.parametrize("arch,style", CASES, ids=IDS)
def test_one_training_step_at_batch_size_4(tmp_path, arch, style):
    check_train_step(arch, style, tmp_path)
