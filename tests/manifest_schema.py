"""runtime/manifest.schema.json as a test helper: validate a manifest dictionary, and make every
``Manifest.from_dict`` of a test session check that what Python accepts the schema accepts too
(tests/conftest.py installs it; tests/unit/test_manifest_schema.py checks the reverse)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, List

import jsonschema

from headpose.runtime.manifest import SCHEMA_FILE, Manifest


@lru_cache(maxsize=1)
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(d: Any) -> List[str]:
    """Every place where ``d`` breaks the schema, as ``path: message`` (empty when it conforms)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator().iter_errors(d), key=lambda e: list(map(str, e.absolute_path)))]


CHECKED = {"manifests": 0}


def install():
    """Wrap ``Manifest.from_dict``: a manifest it accepts must also meet the schema. Returns an undo."""
    original = Manifest.__dict__["from_dict"]

    def from_dict(cls, d, where: str = "manifest"):
        m = original.__func__(cls, d, where)
        errors = schema_errors(d)
        assert not errors, (f"{where}: Manifest.from_dict accepted a manifest that runtime/manifest.schema.json "
                            f"rejects: {errors}")
        CHECKED["manifests"] += 1
        return m

    Manifest.from_dict = classmethod(from_dict)
    return lambda: setattr(Manifest, "from_dict", original)
