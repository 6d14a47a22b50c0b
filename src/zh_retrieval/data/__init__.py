"""The formats on disk: MLDR-layout datasets, passages cut from documents, and what prepare and embed write."""
