"""Exemplars: encode the harvest with an SAE and mine per-feature windows (top, quantile, random; train/test split)."""
