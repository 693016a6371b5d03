"""Committed JSON Schemas of the event contracts (generated; do not edit the .json by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from kibamail.contracts import schema_models

SCHEMA_DIR = Path(__file__).parent


def render_schemas() -> dict[str, str]:
    return {
        f"{name}.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in sorted(schema_models().items())
    }


def write_schemas(check: bool = False) -> list[str]:
    """Write the schemas (or only report which differ when check=True)."""
    changed = []
    for filename, text in render_schemas().items():
        path = SCHEMA_DIR / filename
        if not path.exists() or path.read_text() != text:
            changed.append(filename)
            if not check:
                path.write_text(text)
    return changed
