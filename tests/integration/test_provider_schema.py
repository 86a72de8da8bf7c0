"""Every resource and data block of infra/ against the providers' own schemas.

`terraform validate` would find an unknown argument, a missing required one, or a block written as
an attribute, but it needs the providers, which cannot be downloaded here. The schemas come from the
providers' prebuilt CDK bindings, pinned in the Makefile to the versions versions.tf allows, and
reduced by tests/provider_schema.py (`make provider-schemas`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SCHEMAS = Path(os.environ.get("PROVIDER_SCHEMAS", ROOT / ".provider-schemas"))

# Terraform's own arguments and blocks, valid in every resource and data block.
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}


@cache
def schema(provider: str) -> dict[str, Any]:
    path = SCHEMAS / f"{provider}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make provider-schemas` downloads and reduces the provider schemas")
    return json.loads(path.read_text())


def _name(text: str) -> str:
    return text.strip('"')


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def _check(body: dict, arguments: dict, where: str) -> list[str]:
    """Problems in one block body against its schema: {name: {"required": bool, "block": {...}}}."""
    problems: list[str] = []
    given = set()
    for key, value in body.items():
        if key in ("__is_block__", "__comments__"):
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, spec in dynamic.items():
                    if label == "__is_block__":
                        continue
                    name = _name(label)
                    given.add(name)
                    if "block" not in arguments.get(name, {}):
                        problems.append(f"{where}: dynamic {name!r} is not a block of this type")
                        continue
                    for content in spec["content"]:
                        problems += _check(content, arguments[name]["block"], f"{where}.{name}")
            continue
        given.add(key)
        if key not in arguments:
            problems.append(f"{where}: unknown argument or block {key!r}")
        elif _is_block(value) and "block" not in arguments[key]:
            problems.append(f"{where}: {key!r} is an argument, written as a block")
        elif not _is_block(value) and "block" in arguments[key]:
            problems.append(f"{where}: {key!r} is a block, written as an argument")
        elif _is_block(value):
            for nested in value:
                problems += _check(nested, arguments[key]["block"], f"{where}.{key}")
    for name, spec in arguments.items():
        if spec["required"] and name not in given:
            problems.append(f"{where}: required {name!r} is missing")
    return problems


def _blocks(parsed: dict, kind: str) -> list[dict]:
    """Top-level blocks of a kind, and for data also those scoped in check blocks."""
    blocks = list(parsed.get(kind, []))
    if kind == "data":
        for check in parsed.get("check", []):
            for label, body in check.items():
                if label != "__is_block__":
                    blocks += body.get("data", [])
    return blocks


def problems_in(directory: Path) -> list[str]:
    """Every schema problem of every resource, data and provider block in the directory's .tf files."""
    problems: list[str] = []
    for path in sorted(directory.glob("*.tf")):
        with open(path) as source:
            parsed = hcl2.load(source)
        for kind in ("resource", "data"):
            for block in _blocks(parsed, kind):
                for quoted_type, named in block.items():
                    tf_type = _name(quoted_type)
                    for quoted_name, body in named.items():
                        if quoted_name == "__is_block__":
                            continue
                        where = f"{path.name}: {kind} {tf_type}.{_name(quoted_name)}"
                        provider = body.get("provider") or tf_type.split("_", 1)[0]
                        provider = re.sub(r"^\$\{(.*)\}$", r"\1", provider)
                        types = schema(provider)[kind]
                        if tf_type not in types:
                            problems.append(f"{where}: no such {kind} in {provider} {schema(provider)['version']}")
                            continue
                        own = {key: value for key, value in body.items() if key not in META_ARGUMENTS}
                        problems += _check(own, types[tf_type], where)
        for block in parsed.get("provider", []):
            for quoted_name, body in block.items():
                provider = _name(quoted_name)
                own = {key: value for key, value in body.items() if key != "alias"}
                problems += _check(own, schema(provider)["configuration"], f"{path.name}: provider {provider}")
    return problems


def required_providers() -> dict[str, str]:
    with open(INFRA / "versions.tf") as source:
        terraform = hcl2.load(source)["terraform"][0]
    [providers] = terraform["required_providers"]
    return {name: _name(spec["version"]) for name, spec in providers.items() if isinstance(spec, dict)}


def test_the_schemas_are_those_of_the_provider_versions_versions_tf_allows() -> None:
    for provider, constraint in required_providers().items():
        pinned = re.fullmatch(r"~> (\d+)\.(\d+)\.(\d+)", constraint)
        assert pinned, f"{provider}: pin to patch releases ('~> X.Y.Z'), got {constraint!r}"
        version = tuple(int(p) for p in schema(provider)["version"].split("."))
        major, minor, patch = (int(p) for p in pinned.groups())
        assert version[:2] == (major, minor) and version[2] >= patch, (provider, constraint, version)


def test_every_resource_data_and_provider_block_matches_its_provider_schema() -> None:
    assert problems_in(INFRA) == []


def test_the_check_catches_typos_planted_in_a_copy_of_infra_and_a_block_written_as_an_argument(
    tmp_path: Path,
) -> None:
    planted = tmp_path / "infra"
    shutil.copytree(INFRA, planted, ignore=shutil.ignore_patterns(".build", ".terraform"))
    functions = planted / "functions.tf"
    text = functions.read_text()
    text = text.replace("timeout_seconds                  =", "timeout_secs                     =", 1)
    functions.write_text(text)
    apis = planted / "apis.tf"
    identity = "  service = each.value\n"  # google_project_service_identity.agents
    apis.write_text(apis.read_text().replace(identity, identity + "  timeouts = {}\n", 1))
    pubsub = planted / "pubsub.tf"
    pubsub.write_text(pubsub.read_text().replace("  retry_policy {", "  retry_polcy {", 1))
    versions = planted / "versions.tf"
    versions.write_text(versions.read_text().replace("default_labels = local.labels", "labels = local.labels", 1))

    found = "\n".join(problems_in(planted))

    assert "google_cloudfunctions2_function.this.service_config: unknown argument or block 'timeout_secs'" in found
    assert "google_project_service_identity.agents: 'timeouts' is a block, written as an argument" in found
    assert "google_pubsub_subscription.create_project_push: unknown argument or block 'retry_polcy'" in found
    assert "versions.tf: provider google: unknown argument or block 'labels'" in found


def test_a_missing_required_argument_and_an_unknown_type_are_reported(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'resource "google_pubsub_topic" "t" {\n  message_retention_duration = "600s"\n}\n'
        'data "google_storage_bucket_objekt" "o" {\n  bucket = "b"\n}\n'
        'resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "EU"\n'
        "  lifecycle_rule {\n    condition {\n      age = 1\n    }\n  }\n}\n"
        'check "c" {\n  data "google_cloud_run_v2_service" "s" {\n    location = "EU"\n  }\n'
        '  assert {\n    condition = true\n    error_message = "x"\n  }\n}\n'
    )

    found = problems_in(tmp_path)

    assert "main.tf: resource google_pubsub_topic.t: required 'name' is missing" in found
    assert any("google_storage_bucket_objekt.o: no such data in google" in p for p in found), found
    assert "main.tf: resource google_storage_bucket.b.lifecycle_rule: required 'action' is missing" in found
    assert "main.tf: data google_cloud_run_v2_service.s: required 'name' is missing" in found  # scoped in a check
