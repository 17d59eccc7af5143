"""Shared fixtures: paths to the real data in ../shared and seeded checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headpose.runtime.paths import SHARED

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED / "data"
WEIGHTS = SHARED / "weights"
VIDEO = DATA / "in_video.mp4"
IMAGES = DATA / "images"
SLOW = os.environ.get("HEADPOSE_SLOW") == "1"


# Tests that build artifacts (a conversion costs a minute or two) are marked ``integration``: those
# whose fixtures include one of these, and every test of these modules. ``pytest -m "not integration"``
# is the fast run while editing code; plain ``pytest`` (and .ci/run) runs them all.
INTEGRATION_FIXTURES = {"artifact", "crops", "small_cropset", "cropset_dir"}
INTEGRATION_MODULES = {"tests/unit/test_convert_edges.py", "tests/unit/test_default_run.py",
                       "tests/unit/test_packaging.py", "tests/convert/test_cli.py",
                       "tests/convert/test_upstream_conformance.py", "tests/convert/test_convert_real.py",
                       "tests/convert/test_xnnpack_partition.py", "tests/distill/test_distill_run.py",
                       "tests/distill/test_int8_gate.py", "tests/android/test_core_golden.py",
                       "tests/arm64/test_golden_arm.py", "tests/coreml/test_coreml.py",
                       "tests/runtime/test_shipped_int8.py", "tests/convert/test_steps.py"}
# single tests that run real models or exports for seconds (measured with --durations), so that the fast
# run stays under a minute
INTEGRATION_TESTS = {"tests/convert/test_calib_gate.py::test_several_sources_split_by_source",
                     "tests/distill/test_evaluate.py::test_eval_cli_reads_the_plans_held_out_list",
                     "tests/unit/test_checkpoint.py::test_loads_plain_and_training_checkpoints",
                     "tests/unit/test_checkpoint.py::test_single_linear_head_re_expressed_exactly_and_folded_back_at_export",
                     "tests/unit/test_checkpoint.py::test_upstream_training_checkpoint_loads_with_epoch_and_args",
                     "tests/unit/test_checkpoint.py::test_both_mobilenetv3_heads_load_strictly_and_say_which",
                     "tests/browser/test_live_view.py::test_the_page_passes_its_token_on_off_loopback",
                     "tests/bench/test_plan.py::test_bench_report_merges_two_devices_one_plot_per_stage",
                     "tests/bench/test_flops.py::test_registered_backbones_are_ordered_by_cost"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        test = f"{rel}::{getattr(item, 'originalname', item.name)}"
        if rel in INTEGRATION_MODULES or test in INTEGRATION_TESTS \
                or INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    if SLOW or config.getoption("-m") and "slow" in config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow conversion matrix: run with HEADPOSE_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def manifests_meet_the_schema():
    """Every manifest a test builds, converts or reads is also checked against runtime/manifest.schema.json
    (tests/manifest_schema.py): whatever ``Manifest.from_dict`` accepts, the schema must accept."""
    try:
        import jsonschema  # noqa: F401  (the dev extra; the ARM64 leg's device venv is the bare wheel + pytest)
    except ImportError:
        yield  # the device install has no jsonschema: tests/unit/test_manifest_schema.py checks it on the dev one
        return
    from manifest_schema import install
    undo = install()
    yield
    undo()


def need_shared(path: Path) -> Path:
    """Skip (saying why) when a file of ../shared is absent."""
    if not path.exists():
        pytest.skip(f"real data {path} is not present (../shared is laid beside the checkout in dev and CI)")
    return path


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt")


@pytest.fixture(scope="session")
def seeded_ckpt(ckpt_dir):
    """Factory: path of a seeded checkpoint (randomised BN statistics) of a pose backbone."""
    from headpose.convert.checkpoint import seeded_checkpoint
    made = {}

    def make(model_id: str) -> Path:
        if model_id not in made:
            made[model_id] = seeded_checkpoint(model_id, ckpt_dir / f"{model_id}.pt", seed=1)
        return made[model_id]
    return make


# ---- conversion artifacts (tests/convert and every stage that needs a real .tflite) --------------
SCRFD_ONNX = {"scrfd_500m": "scrfd_500m_bnkps.onnx", "scrfd_2.5g": "scrfd_2.5g_bnkps.onnx"}


@pytest.fixture(scope="session")
def artifact(tmp_path_factory, seeded_ckpt):
    """Factory ``artifact(model_id, precision, size=None, fmt="tflite", weights=None) -> Path`` of an artifact dir.

    Built once per test session by ``headpose.convert.pipeline.convert`` (parity gate included):
    pose models from ``weights`` or else the ``seeded_ckpt`` checkpoint, SCRFD from ../shared/weights/*_bnkps.onnx,
    calibration and parity data from ../shared/data/in_video.mp4. ``HEADPOSE_TEST_ARTIFACTS=DIR``
    keeps the artifacts in DIR across sessions (a dev shortcut; CI builds them fresh).
    """
    from headpose.convert.pipeline import convert
    keep = os.environ.get("HEADPOSE_TEST_ARTIFACTS")
    out = Path(keep) if keep else tmp_path_factory.mktemp("artifacts")
    made = {}

    def make(model_id: str, precision: str = "fp32", size=None, fmt: str = "tflite", weights=None) -> Path:
        key = (model_id, precision, size, fmt, str(weights))
        if key not in made:
            need_shared(VIDEO)
            where = out if weights is None else out / f"given-{Path(weights).stem}"
            if weights is None:
                weights = (need_shared(WEIGHTS / SCRFD_ONNX[model_id]) if model_id in SCRFD_ONNX
                           else seeded_ckpt(model_id))
            from headpose.runtime.manifest import artifact_id
            from headpose.runtime.registry import get_spec
            existing = where / artifact_id(model_id, size or get_spec(model_id).input_size, fmt, precision)
            if keep and (existing / "manifest.json").exists():
                made[key] = existing
            else:
                # int8 figures are recorded; the int8 accuracy gate (max_int8_error, with its
                # remedies) has tests of its own and does not apply to random seeded weights
                made[key] = convert(model_id, weights, fmt=fmt, precision=precision, calib=VIDEO,
                                    input_size=size, out_dir=where, force=True, max_int8_error=None)
        return made[key]
    return make


def trained_student(model_id: str):
    """The project's own trained checkpoint of a backbone (its student), or None: the lookup of bench and matrix."""
    from headpose.convert.weights import trained_pose_checkpoint
    return trained_pose_checkpoint(model_id)
