"""The results report, the released models' cards, and per-query comparisons."""
