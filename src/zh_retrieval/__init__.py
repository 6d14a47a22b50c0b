"""Fine-tune and evaluate Chinese text embedders for retrieval: DVC stages (`stages/`) over a small library."""
