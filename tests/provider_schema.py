"""The Terraform providers' schemas, as published in their prebuilt CDK bindings.

`terraform init` cannot download providers on the development machines, so `terraform validate`
never runs there. The CDK Terrain packages (cdktn-provider-google and friends) are generated from
each provider's own schema: their jsii assembly has, for every resource and data source, a
`...Config` struct whose properties are the arguments (optional or not) and whose struct-typed
properties are the nested blocks. `make provider-schemas` downloads the pinned wheels and runs
this module to reduce each assembly to a small JSON file that tests/integration/test_provider_schema.py reads.

Usage: python tests/provider_schema.py OUT_DIR WHEEL...
"""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

# "Create a new {@link https://<registry>/providers/hashicorp/google/7.46.1/docs/resources/storage_bucket
# google_storage_bucket} Resource." names the Terraform type, its kind and the provider version.
_TYPE_LINK = re.compile(r"/providers/hashicorp/([\w-]+)/([\d.]+)/docs/(resources|data-sources)/\w+ (\w+)\}")
# Each property's docs end with "{@link ...#build_config Cloudfunctions2Function#build_config}":
# the argument's Terraform name, which camelCase cannot always be turned back into.
_ARG_LINK = re.compile(r"\{@link \S+#\w+ \w+#(\w+)\}")
_BASES = {"cdktn.TerraformResource": "resource", "cdktn.TerraformDataSource": "data"}
# The provider's own configuration (the arguments of a `provider "google" {}` block).
_PROVIDER_BASE = "cdktn.TerraformProvider"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _struct_of(kind: dict, types: dict) -> tuple[str | None, bool]:
    """The struct a property's type refers to, and whether it is a list of them (a repeated block)."""
    candidates = kind["union"]["types"] if "union" in kind else [kind]
    for candidate in candidates:
        if "fqn" in candidate and types.get(candidate["fqn"], {}).get("datatype"):
            return candidate["fqn"], False
        element = candidate.get("collection", {})
        if element.get("kind") == "array" and types.get(element["elementtype"].get("fqn", ""), {}).get("datatype"):
            return element["elementtype"]["fqn"], True
    return None, False


def _arguments(fqn: str, types: dict, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """{name: {"required": bool, "block": {...nested arguments} or absent}} of one struct."""
    arguments: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        docs = prop.get("docs", {})
        link = _ARG_LINK.search(docs.get("remarks", "") + " " + docs.get("summary", ""))
        name = link.group(1) if link else _snake(prop["name"])
        entry: dict[str, Any] = {"required": not prop.get("optional", False)}
        struct, _ = _struct_of(prop["type"], types)
        if struct and struct not in seen:
            entry["block"] = _arguments(struct, types, seen | {struct})
        arguments[name] = entry
    return arguments


def reduce_assembly(assembly: dict) -> dict[str, Any]:
    """{"provider": name, "version": x.y.z, "resource": {type: args}, "data": {type: args},
    "configuration": args of the provider block}."""
    types = assembly["types"]
    reduced: dict[str, Any] = {"resource": {}, "data": {}, "configuration": {}}
    for fqn, declared in types.items():
        if declared.get("base") == _PROVIDER_BASE:
            reduced["configuration"] = _arguments(f"{fqn}Config", types)
            continue
        kind = _BASES.get(declared.get("base", ""))
        if kind is None:
            continue
        link = _TYPE_LINK.search(declared["initializer"]["docs"]["summary"])
        provider, version, _, tf_type = link.groups()
        reduced.update(provider=provider, version=version)
        reduced[kind][tf_type] = _arguments(f"{fqn}Config", types)
    return reduced


def _assembly(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        [member] = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(archive.read(member))) as tarball:
            return json.load(tarball.extractfile("package/.jsii"))


def main(out_dir: str, *wheels: str) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        reduced = reduce_assembly(_assembly(Path(wheel)))
        target = Path(out_dir) / f"{reduced['provider']}.json"
        target.write_text(json.dumps(reduced, sort_keys=True))
        print(f"{target}: {reduced['provider']} {reduced['version']}, {len(reduced['resource'])} resources")


if __name__ == "__main__":
    main(*sys.argv[1:])
