"""ORQA data: QA files, block records, reader features, answer spans."""
