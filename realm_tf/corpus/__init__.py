"""Corpus builders: the retrieval corpus Z (blocks) and the pre-training corpus X.

`build_retrieval_corpus` turns jsonl passages or articles into sharded GZIP TFRecords of
blocks with wordpiece ids; `build_pretrain_corpus` turns jsonl passages into sharded GZIP
TFRecords with sentence and salient-span byte offsets. Both formats: docs/ARCHITECTURE.md.
"""
