"""ORQA evaluation metrics (exact match, regex match, answer recall)."""
