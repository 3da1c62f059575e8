"""The Inverse Cloze Task: the retriever's warm start before REALM (language/orqa/models/ict_model.py).

* `examples`: ICT block examples (title, wordpieces, sentence starts) from passages;
* `dataset`: a random sentence of a block as the pseudo-query for its block;
* `model`: the shared tower's in-batch-negative loss, metrics and train/eval steps.
"""
