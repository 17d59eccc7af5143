"""The steps of the conversion route: PyTorch/ONNX -> simplified ONNX -> TFLite (see ``pipeline``)."""
