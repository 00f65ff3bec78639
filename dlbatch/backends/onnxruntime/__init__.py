"""The onnxruntime backend: inference only, in an onnxruntime InferenceSession built from the
model's graph and current weights (optional extra `pip install 'dlbatch[onnxruntime]'`)."""
