"""Fine-tune and evaluate Chinese text embedders for retrieval, one DVC stage per module."""
