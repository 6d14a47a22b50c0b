"""Text to vectors, vectors and words to rankings, rankings to metrics."""
