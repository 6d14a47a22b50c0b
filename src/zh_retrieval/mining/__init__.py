"""Training rows for the embedder: a positive passage and guarded hard, random and dataset negatives per query."""
