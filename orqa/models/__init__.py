"""ORQA models: the retriever and reader towers, span scorer, losses, answer text."""
