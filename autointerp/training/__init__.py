"""Harvesting (contexts, shards), SAEs (architectures, trainer, metrics) and exemplar mining."""
