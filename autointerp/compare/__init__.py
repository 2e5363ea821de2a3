"""Cross-model feature matching: label-embedding and activation-correlation (Hungarian) matching (planned)."""
