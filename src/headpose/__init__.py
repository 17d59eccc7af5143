"""headpose-edge: real-time head pose estimation on the edge.

Sub-packages: ``headpose.runtime`` (device runtime, NumPy + LiteRT), ``headpose.convert``
(PyTorch/ONNX -> ONNX/TFLite/CoreML artifacts), ``headpose.benchmarks`` (latency harness),
``headpose.distill`` (teacher -> student distillation and evaluation).
"""

__version__ = "0.1.0"
