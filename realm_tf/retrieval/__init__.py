"""The retrieval index: export directories, block_emb, searchers, corpus embedding.

Modules: `export_dirs` (timestamped export discovery, retention, atomic commit),
`block_emb_file` (the `block_emb` checkpoint), `searchers` (brute force and ScaNN),
`corpus_reader` (the retrieval-corpus shards), `corpus_embedding` (embedding every
block), `encoded_export` (reading a committed index snapshot), `refresher` (re-embedding
the corpus with each new embedder export; its job is `python -m realm_tf.refresh`).
"""
