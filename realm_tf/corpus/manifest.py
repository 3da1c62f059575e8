"""Corpus layout: versioned builds behind one manifest, and how readers find the shards.

A build with `--output_prefix=data/blocks` writes

  data/blocks.builds/<build_id>/blocks-00000-of-000NN ...   the shards of one build
  data/blocks.manifest.json                                 the pointer: what was built,
                                                            from what, and where

The manifest names its build's directory (`"directory"`, relative to the manifest) and
lists every shard with its record count, size and SHA-256. A build writes its shards into
a fresh `<prefix>.builds/.tmp-<build_id>/`, renames that to `<build_id>/`, and only then
replaces the manifest (`os.replace`, atomic): a reader sees the old corpus or the new one
as a whole, never a mix, whatever moment a build is killed at. The previous build is kept
(a job that opened it may still be reading it); older ones are deleted after the switch.

Readers follow the manifest, never a glob of whatever files are there (`resolve`). A
corpus path may be the manifest, the prefix, or, as before this layout, a glob of shard
names such as `data/blocks-*` or `data/blocks-*-of-*`: a glob is matched against the shard
names that the manifests in its directory list, and the shards are read where those
manifests say. Only a glob that no manifest answers is matched against the files
themselves (shards written by other tools, the original release's).
"""

import dataclasses
import fnmatch
import hashlib
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence

from realm_tf import errors

MANIFEST_SUFFIX = ".manifest.json"
BUILDS_SUFFIX = ".builds"
TEMP_BUILD_PREFIX = ".tmp-"
_GLOB_CHARS = re.compile(r"[*?\[]")


class CorpusNotFoundError(errors.RealmInputError):
  """No corpus (manifest or shards) at the path given."""


class VocabMismatchError(errors.RealmInputError):
  """The corpus was tokenized with another vocabulary than the one given."""


def manifest_name(output_prefix: str) -> str:
  """File name (not path) of a build's manifest: `<basename(prefix)>.manifest.json`."""
  return os.path.basename(os.path.abspath(output_prefix)) + MANIFEST_SUFFIX


def manifest_path(output_prefix: str) -> str:
  """`<prefix>.manifest.json`."""
  return os.path.abspath(output_prefix) + MANIFEST_SUFFIX


def builds_dir(output_prefix: str) -> str:
  """`<prefix>.builds`, the parent of every build's shard directory."""
  return os.path.abspath(output_prefix) + BUILDS_SUFFIX


def write_manifest(path: str, manifest: Dict[str, Any]) -> None:
  """Writes the manifest as sorted, indented JSON, durably (fsync), not atomically."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())


def read_manifest(path: str) -> Dict[str, Any]:
  """The manifest at `path` (local or any `tf.io.gfile` path).

  Raises:
    CorpusNotFoundError: there is none.
    InputFileError: it is not a corpus manifest.
  """
  try:
    text = _read_text(path)
  except FileNotFoundError:
    raise CorpusNotFoundError(f"No corpus manifest at {path}") from None
  try:
    manifest = json.loads(text)
  except json.JSONDecodeError as e:
    raise errors.InputFileError(path, e.lineno, f"not a corpus manifest: {e.msg}") from None
  if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
    raise errors.InputFileError(path, None, "not a corpus manifest (no 'shards' list)")
  for entry in manifest["shards"]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
      raise errors.InputFileError(path, None, f"malformed shard entry {entry!r}")
  return manifest


def shard_directory(path: str, manifest: Dict[str, Any]) -> str:
  """Where the shards of the manifest at `path` are (older builds: beside it)."""
  return os.path.join(os.path.dirname(path), manifest.get("directory") or "")


def content_sha256(counts: Sequence[int], shard_sha256s: Sequence[str]) -> str:
  """The corpus fingerprint: SHA-256 of the shards' record counts and SHA-256s, in order.

  It depends on the records and their order only, not on where the shards are, so a
  rebuild of the same input has the same fingerprint and any change of content or order
  gives another.
  """
  digest = hashlib.sha256()
  for count, sha in zip(counts, shard_sha256s):
    digest.update(f"{int(count)}\t{sha}\n".encode("ascii"))
  return digest.hexdigest()


@dataclasses.dataclass
class CorpusFiles:
  """The shards a corpus path stands for.

  Attributes:
    pattern: the path as given.
    shard_paths: the shards, in corpus order.
    manifest_path: the manifest when the shards are one whole build, else None.
    manifest: its contents, or None.
    entries: the manifest entry of each shard (name, count, bytes, sha256), or None for
      shards that no manifest lists.
  """
  pattern: str
  shard_paths: List[str]
  manifest_path: Optional[str] = None
  manifest: Optional[Dict[str, Any]] = None
  entries: Optional[List[Dict[str, Any]]] = None


def _read_text(path: str) -> str:
  if "://" not in path:
    with open(path, encoding="utf-8") as f:
      return f.read()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (remote paths only)
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      return f.read()
  except tf.errors.NotFoundError:
    raise FileNotFoundError(path) from None


def _exists(path: str) -> bool:
  if "://" not in path:
    return os.path.exists(path)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile.exists(path)


def _glob(pattern: str) -> List[str]:
  if "://" not in pattern:
    import glob  # pylint: disable=g-import-not-at-top
    return glob.glob(pattern)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile.glob(pattern)


def _whole_build(pattern: str, path: str) -> CorpusFiles:
  manifest = read_manifest(path)
  directory = shard_directory(path, manifest)
  entries = manifest["shards"]
  return CorpusFiles(pattern, [os.path.join(directory, e["name"]) for e in entries],
                     path, manifest, list(entries))


def _resolve_one(part: str) -> CorpusFiles:
  if part.endswith(MANIFEST_SUFFIX):
    return _whole_build(part, part)
  if not _GLOB_CHARS.search(part):
    if _exists(part + MANIFEST_SUFFIX):
      return _whole_build(part, part + MANIFEST_SUFFIX)
    return CorpusFiles(part, [part] if _exists(part) else [])
  # A glob of shard names: answered by the manifests of its directory when one lists a
  # matching name; by the files themselves otherwise.
  directory, name_pattern = os.path.split(part)
  shard_paths, entries, manifests = [], [], []
  for candidate in sorted(_glob(os.path.join(directory, "*" + MANIFEST_SUFFIX))):
    try:
      manifest = read_manifest(candidate)
    except errors.RealmInputError:
      continue  # Some other JSON file whose name ends like a manifest.
    chosen = [e for e in manifest["shards"] if fnmatch.fnmatchcase(e["name"], name_pattern)]
    if chosen:
      build_dir = shard_directory(candidate, manifest)
      shard_paths += [os.path.join(build_dir, e["name"]) for e in chosen]
      entries += chosen
      manifests.append((candidate, manifest, len(chosen) == len(manifest["shards"])))
  if manifests:
    whole = len(manifests) == 1 and manifests[0][2]
    return CorpusFiles(part, shard_paths, manifests[0][0] if whole else None,
                       manifests[0][1] if whole else None, entries)
  paths = sorted(p for p in _glob(part) if not p.endswith(MANIFEST_SUFFIX)
                 and not os.path.basename(os.path.dirname(p)).startswith(TEMP_BUILD_PREFIX))
  return CorpusFiles(part, paths)


def resolve(pattern: str) -> CorpusFiles:
  """The shards of a corpus path (see the module docstring), in corpus order.

  Args:
    pattern: a manifest, a build prefix, a shard file, or a glob (or comma-separated
      list of them) of shard names.

  Returns:
    `CorpusFiles`; `shard_paths` is empty when nothing matches.
  """
  parts = [p for p in pattern.split(",") if p]
  resolved = [_resolve_one(p) for p in parts]
  if len(resolved) == 1:
    return resolved[0]
  paths, entries = [], []
  for r in resolved:
    paths += r.shard_paths
    entries += r.entries or [None] * len(r.shard_paths)
  return CorpusFiles(pattern, paths, entries=entries if all(entries) else None)


def file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
  """Hex SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk_bytes), b""):
      digest.update(block)
  return digest.hexdigest()


def check_vocab(manifest: Optional[Dict[str, Any]], corpus_location: str,
                vocab_path: str, what: str = "the vocabulary") -> None:
  """Refuses a corpus tokenized with another vocabulary than `vocab_path`.

  The retrieval-corpus manifest records the SHA-256 of the vocabulary its token ids come
  from; token ids of one vocabulary read with another are silently wrong words (or out of
  range). Corpora without a manifest or without a recorded vocabulary are not checked.

  Args:
    manifest: the corpus manifest, or None.
    corpus_location: the manifest's path, named in the error.
    vocab_path: the vocabulary the consumer tokenizes and embeds with.
    what: how the error names `vocab_path` (e.g. "--vocab_path").

  Raises:
    VocabMismatchError: the hashes differ; names both files.
  """
  recorded = (manifest or {}).get("vocab") or {}
  if not recorded.get("sha256") or not vocab_path:
    return
  actual = _vocab_sha256(vocab_path)
  if actual != recorded["sha256"]:
    raise VocabMismatchError(
        f"The corpus {corpus_location} was tokenized with the vocabulary "
        f"{recorded.get('path')} ({recorded.get('size')} entries, sha256 "
        f"{recorded['sha256'][:12]}), but {what} is {vocab_path} (sha256 {actual[:12]}): "
        "rebuild the corpus with this vocabulary or use the one it was built with.")


def _vocab_sha256(path: str) -> str:
  if "://" not in path:
    return file_sha256(path)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()
