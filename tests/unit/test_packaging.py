"""The built wheel holds every module under the one package name ``headpose`` and imports cleanly."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("convert", "runtime", "benchmarks", "distill")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "--disable-pip-version-check", "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"pip wheel failed: {r.stderr[-2000:]}")
    (whl,) = out.glob("headpose_edge-*.whl")
    return whl


def _expected_modules():
    mods = {"headpose", "headpose.cli"}
    for folder in FOLDERS:
        for py in (ROOT / folder).rglob("*.py"):
            rel = py.relative_to(ROOT).with_suffix("")
            parts = ["headpose", *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods.add(".".join(parts))
    return mods


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"headpose"}, f"bare top-level packages in the wheel: {tops - {'headpose'}}"
    in_wheel = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py")}
    missing = _expected_modules() - in_wheel
    assert not missing, f"modules missing from the wheel: {sorted(missing)}"


def test_wheel_imports_every_module(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
    mods = sorted(_expected_modules())
    code = (
        "import importlib, sys\n"
        f"mods = {mods!r}\n"
        "import headpose\n"
        f"assert headpose.__file__.startswith({str(tmp_path / 'site')!r}), headpose.__file__\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "print(len(mods))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.strip().splitlines()[-1]) == len(mods)


def test_wheel_ships_the_live_view_page(wheel, tmp_path):
    """``headpose run --serve`` serves runtime/static/ from the installed package (package-data)."""
    static = sorted(p.name for p in (ROOT / "runtime" / "static").iterdir())
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        missing = [n for n in static if f"headpose/runtime/static/{n}" not in names]
        assert not missing, f"runtime/static files missing from the wheel (pyproject package-data): {missing}"
        assert "headpose/runtime/manifest.schema.json" in names, "the manifest's JSON Schema is package data"
        z.extractall(tmp_path / "site")
    code = ("from headpose.runtime.serve import STATIC, _page\n"
            f"assert str(STATIC).startswith({str(tmp_path / 'site')!r}), STATIC\n"
            "page, script_hash = _page()\n"
            "assert b'new EventSource' in page and script_hash.startswith(\"'sha256-\")\n"
            "import json\nfrom headpose.runtime.manifest import SCHEMA_FILE\n"
            "assert json.loads(SCHEMA_FILE.read_text())['properties']['schema_version']['const'] == 1\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
