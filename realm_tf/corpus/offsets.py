"""Character offsets (Python `str` indices, as spaCy reports them) to UTF-8 byte offsets.

REALM's pre-training corpus stores *byte* offsets into the UTF-8 text; most
annotators report *character* offsets. They differ as soon as a text has a non-ASCII
character: in "Zürich is", "is" starts at character 7 but byte 8.
"""

import itertools
from typing import List, Sequence, Tuple


class CharToByte:
  """Maps character offsets of one text to byte offsets of its UTF-8 encoding."""

  def __init__(self, text: str):
    self.num_chars = len(text)
    if text.isascii():
      self._table = None  # Identity: skip building the table for ASCII text.
    else:
      # table[i] = byte offset of character i; table[len(text)] = total bytes.
      self._table = [0] + list(itertools.accumulate(
          1 if c < "\x80" else len(c.encode("utf-8")) for c in text))

  def __call__(self, char_offset: int) -> int:
    if not 0 <= char_offset <= self.num_chars:
      raise IndexError(
          f"character offset {char_offset} outside [0, {self.num_chars}]")
    if self._table is None:
      return char_offset
    return self._table[char_offset]

  def spans(self, spans: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Converts (start, end) character spans to byte spans."""
    return [(self(start), self(end)) for start, end in spans]


def char_to_byte_spans(text: str, spans: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
  """Converts (start, end) character spans of `text` into UTF-8 byte spans."""
  return CharToByte(text).spans(spans)
