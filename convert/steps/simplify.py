"""Simplify step: onnx-simplifier (constant folding, shape inference) with a numeric check."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

from ...runtime.errors import ConversionError

log = logging.getLogger(__name__)


def simplify(src: Union[str, Path], dst: Union[str, Path]) -> Path:
    """Simplify ``src`` into ``dst`` with onnxsim; onnxsim compares outputs on random inputs itself.

    Dynamic dimensions (the pose batch) stay dynamic.

    Raises
    ------
    ConversionError
        When onnxsim fails or its own output check fails.
    """
    import onnx
    import onnxsim
    model = onnx.load(str(src))
    try:
        simplified, ok = onnxsim.simplify(model, check_n=1)
    except Exception as e:
        raise ConversionError(f"onnx-simplifier failed on '{Path(src).name}' ({type(e).__name__}: {e}); "
                              f"the ONNX graph may use an unsupported operator") from None
    if not ok:
        raise ConversionError(f"onnx-simplifier changed the outputs of '{Path(src).name}'; the simplified graph "
                              f"is not equivalent (report this model)")
    before, after = len(model.graph.node), len(simplified.graph.node)
    onnx.save(simplified, str(dst))
    log.info("simplified %s: %d -> %d nodes", Path(src).name, before, after)
    return Path(dst)
