"""ORQA ops (`language/orqa/ops/orqa_ops.cc`): HasAnswer and ReaderInputs in TF ops."""
