"""ORQA fine-tuning as a library: its config, model building, steps and loop."""
