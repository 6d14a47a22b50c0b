"""Training the embedder with FlagEmbedding, and merging it with its base model (LM-Cocktail)."""
