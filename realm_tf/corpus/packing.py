"""ORQA block packing (`language/orqa/preprocessing/wiki_preprocessor.py`): title filters
and greedy sentence packing."""

import re
from typing import List, Sequence

# Pages dropped by ORQA's `wiki_preprocessor` (`re.match`: anchored at the start).
TITLE_FILTERS = tuple(re.compile(p) for p in (
    r"List of .+", r"Index of .+", r"Outline of .+", r".*\(disambiguation\).*"))

# [CLS] title [SEP] block [SEP]
NUM_SPECIAL_TOKENS = 3


def is_filtered_title(title: str) -> bool:
  """Whether ORQA drops a page with this title (lists, indexes, outlines, disambiguation)."""
  return any(p.match(title) for p in TITLE_FILTERS)


def greedy_pack(title_length: int, sentence_lengths: Sequence[int],
                max_block_length: int) -> List[List[int]]:
  """Greedily packs consecutive sentences into blocks.

  A sentence joins the current block while `3 + title + block + sentence` wordpieces fit
  in `max_block_length`; otherwise the block is emitted and a new one starts with it. A
  sentence longer than the budget becomes a block of its own (the featurizers truncate
  it later), and the empty first block ORQA can produce is skipped.

  Args:
    title_length: wordpieces in the title.
    sentence_lengths: wordpieces in each sentence, in order.
    max_block_length: the budget, 288 in ORQA and REALM.

  Returns:
    The sentence indices of each block, in order.
  """
  blocks = []
  current = []
  current_length = 0
  for i, length in enumerate(sentence_lengths):
    if NUM_SPECIAL_TOKENS + title_length + current_length + length <= max_block_length:
      current.append(i)
      current_length += length
    else:
      if current:
        blocks.append(current)
      current = [i]
      current_length = length
  if current:
    blocks.append(current)
  return blocks
