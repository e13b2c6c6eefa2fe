"""JSON Schemas for editors, generated from the pydantic models: the workspace config, and the manifest with
each step's `with` typed by its operation's argument model (a value may also be one `${...}` reference)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import models_json_schema

from orchestration.pipeline.manifest import Manifest
from orchestration.pipeline.registry import OPS

REFERENCE = {"type": "string", "pattern": r"^\$\{[^{}]*\}$", "description": "a reference to an earlier value"}
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    from orchestration.config import WorkspaceConfig

    schema = WorkspaceConfig.model_json_schema()
    return {"$schema": DIALECT, **schema}


def manifest_schema() -> dict[str, Any]:
    ops = list(OPS.values())
    keys, schema = models_json_schema([(Manifest, "validation"), *[(op.Args, "validation") for op in ops]])
    defs = schema.setdefault("$defs", {})
    variants = []
    step = defs["Step"]
    for op in ops:
        ref = keys[(op.Args, "validation")]["$ref"]
        args = defs[ref.rsplit("/", 1)[1]]
        for name, prop in list(args.get("properties", {}).items()):
            args["properties"][name] = (
                {"anyOf": [prop, REFERENCE]}
                if "anyOf" not in prop
                else {
                    **prop,
                    "anyOf": [*prop["anyOf"], REFERENCE],
                }
            )
        variant = copy.deepcopy(step)
        variant["properties"]["op"] = {"const": op.name, "description": op.summary}
        variant["properties"]["with"] = {"$ref": ref}
        variant["title"] = op.name
        variants.append(variant)
    defs["Step"] = {"oneOf": variants, "description": step.get("description", "one step")}
    top = defs.pop("Manifest")
    return {"$schema": DIALECT, **top, "$defs": defs}
