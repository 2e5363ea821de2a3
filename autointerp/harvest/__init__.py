"""Harvesting: documents -> contexts -> activation shards at one layer (plus the shard reader the SAE trainer streams from)."""
