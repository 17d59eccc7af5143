import pytest

from headpose.runtime.errors import HeadposeError, UnknownModelError
from headpose.runtime.registry import DETECTOR_MODELS, POSE_MODELS, REGISTRY, format_registry, get_spec


def test_registry_contents():
    assert POSE_MODELS == ("resnet18", "resnet34", "resnet50", "mobilenetv2", "mobilenetv3_small",
                           "mobilenetv3_large")
    assert DETECTOR_MODELS == ("scrfd_500m", "scrfd_2.5g", "scrfd_10g")
    for m in POSE_MODELS:
        s = get_spec(m)
        assert (s.input_size, s.color, s.decode["kind"]) == (224, "RGB", "ortho6d")
        assert [round(x / 255, 3) for x in s.mean] == [0.485, 0.456, 0.406]
        assert [round(x / 255, 3) for x in s.std] == [0.229, 0.224, 0.225]
    for m in DETECTOR_MODELS:
        s = get_spec(m)
        assert s.mean == (127.5,) * 3 and s.std == (128.0,) * 3
        assert s.decode["strides"] == [8, 16, 32] and s.decode["anchors_per_cell"] == 2


def test_unknown_model_suggests():
    with pytest.raises(UnknownModelError, match="Did you mean 'mobilenetv3_small'"):
        get_spec("mobilenet_v3_small")
    with pytest.raises(HeadposeError, match="expected one of"):
        get_spec("yolo")


def test_table_lists_every_model():
    t = format_registry()
    assert all(m in t for m in REGISTRY)


def test_cli_models(capsys):
    from headpose.cli import main
    assert main(["models"]) == 0
    assert "scrfd_2.5g" in capsys.readouterr().out
