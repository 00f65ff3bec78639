"""Pure numpy CPU backend: every ONNX op is a kernel with an explicit forward and backward."""
