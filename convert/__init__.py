"""Conversion stage: PyTorch pose checkpoints and SCRFD ONNX -> ONNX / TFLite artifacts + manifest.

May import ``headpose.runtime``; the runtime never imports this package.
"""
