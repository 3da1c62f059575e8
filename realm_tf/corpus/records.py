"""tf.train.Example encoding without TensorFlow, a record spool, and GZIP shard writing.

Workers encode `tf.train.Example` protos by hand (the wire format is small and fixed)
so that the pre-training builder's workers never import TensorFlow, and so that the
bytes are deterministic: features are written in sorted key order, exactly what
`Example.SerializeToString(deterministic=True)` produces.
"""

import array
import math
import struct
from typing import Dict, List, Sequence, Tuple, Union

FeatureValue = Union[List[bytes], List[int]]

_MASK64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
  value &= _MASK64  # Negative int64 values are 10-byte two's-complement varints.
  out = bytearray()
  while True:
    low = value & 0x7F
    value >>= 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


# Token ids are small; caching their varints makes encoding a dict lookup per value.
_VARINT_CACHE = [_varint(i) for i in range(1 << 16)]
_MINUS_ONE = _varint(-1)


def _varint_cached(value: int) -> bytes:
  if 0 <= value < 65536:
    return _VARINT_CACHE[value]
  if value == -1:
    return _MINUS_ONE
  return _varint(value)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field (wire type 2)."""
  return _varint_cached((number << 3) | 2) + _varint_cached(len(payload)) + payload


def int64_feature(values: Sequence[int]) -> bytes:
  """Serialized `Feature{int64_list{value: [...]}}` (packed, as protobuf writes it)."""
  if not values:
    return _field(3, b"")
  packed = b"".join([_varint_cached(int(v)) for v in values])
  return _field(3, _field(1, packed))


def bytes_feature(values: Sequence[bytes]) -> bytes:
  """Serialized `Feature{bytes_list{value: [...]}}`."""
  return _field(1, b"".join([_field(1, v) for v in values]))


def encode_example(features: Dict[str, Tuple[str, FeatureValue]]) -> bytes:
  """Serializes a `tf.train.Example`.

  Args:
    features: name -> ("bytes" | "int64", list of values).

  Returns:
    The serialized proto, keys in sorted order (deterministic).
  """
  entries = []
  for name in sorted(features):
    kind, values = features[name]
    if kind == "bytes":
      feature = bytes_feature(values)
    elif kind == "int64":
      feature = int64_feature(values)
    else:
      raise ValueError(f"Unknown feature kind {kind!r} for {name!r}")
    entry = _field(1, name.encode("utf-8")) + _field(2, feature)
    entries.append(_field(1, entry))  # Features.feature map entry
  return _field(1, b"".join(entries))  # Example.features


class SpoolWriter:
  """Appends length-prefixed records to a local file and remembers their offsets."""

  def __init__(self, path: str):
    self.path = path
    self._file = open(path, "wb")
    # offsets[i] = byte offset of record i, the last one the end (8 bytes a record).
    self.offsets = array.array("q", [0])

  def write(self, record: bytes) -> None:
    self._file.write(struct.pack("<Q", len(record)))
    self._file.write(record)
    self.offsets.append(self.offsets[-1] + 8 + len(record))

  @property
  def count(self) -> int:
    return len(self.offsets) - 1

  def close(self) -> None:
    self._file.close()


def read_spool(path: str, start_offset: int, count: int):
  """Yields `count` records from a spool file starting at a byte offset."""
  with open(path, "rb") as f:
    f.seek(start_offset)
    for _ in range(count):
      (length,) = struct.unpack("<Q", f.read(8))
      yield f.read(length)


def shard_ranges(total: int, num_shards: int) -> List[Tuple[int, int]]:
  """[start, stop) record ranges: ceil(total / num_shards) consecutive records a shard.

  As `language/realm/generate_retrieval_corpus.py`; trailing shards may be short
  or empty, and are still written so the `-of-NNNNN` names stay complete.
  """
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  per_shard = max(1, math.ceil(total / num_shards))
  return [(min(i * per_shard, total), min((i + 1) * per_shard, total))
          for i in range(num_shards)]


def write_gzip_shard(args) -> int:
  """Copies records [start, stop) of a spool into one GZIP TFRecord file.

  Args:
    args: (spool_path, start_offset, count, output_path), one tuple so that
      `multiprocessing.Pool.map` can call it.

  Returns:
    The number of records written.
  """
  spool_path, start_offset, count, output_path = args
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only here: TF is slow to import)
  with tf.io.TFRecordWriter(output_path, options="GZIP") as writer:
    for record in read_spool(spool_path, start_offset, count):
      writer.write(record)
  return count
