"""The `<output_prefix>.manifest.json` written next to every corpus build."""

import json
import os
from typing import Any, Dict

MANIFEST_SUFFIX = ".manifest.json"


def manifest_name(output_prefix: str) -> str:
  """File name (not path) of a build's manifest: `<basename(prefix)>.manifest.json`."""
  return os.path.basename(os.path.abspath(output_prefix)) + MANIFEST_SUFFIX


def write_manifest(path: str, manifest: Dict[str, Any]) -> None:
  """Writes the manifest as sorted, indented JSON."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
    f.write("\n")


def read_manifest(path: str) -> Dict[str, Any]:
  with open(path, encoding="utf-8") as f:
    return json.load(f)
