"""Cross-model feature matching: activation correlation on shared word units (Hungarian + null) and label-embedding matching."""
