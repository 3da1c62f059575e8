"""Regex character classes for Unicode letter case (Python's `re` has no \\p{Lu})."""

import sys


def _char_class(predicate) -> str:
  """A `[...]` body with every BMP code point for which `predicate` holds, as ranges."""
  ranges = []
  start = prev = None
  for code in range(0x10000):
    if predicate(chr(code)):
      if start is None:
        start = code
      elif code != prev + 1:
        ranges.append((start, prev))
        start = code
      prev = code
  if start is not None:
    ranges.append((start, prev))

  def esc(c):
    return "\\" + chr(c) if chr(c) in "\\]^-[" else chr(c)

  return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


# Uppercase and titlecase letters (Lu, Lt): "É", "Ō", "Ǆ".
UPPER = _char_class(lambda c: c.isupper() or c.istitle())
# Lowercase letters.
LOWER = _char_class(lambda c: c.islower())

del sys
