"""Device runtime of headpose-edge: NumPy plus the LiteRT interpreter, nothing else.

This package must never import torch, TensorFlow, onnx or anything under ``headpose.convert``.
"""
