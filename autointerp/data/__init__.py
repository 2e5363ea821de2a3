"""Corpus sources: the embedded factbook, local text/jsonl/parquet/csv files, and Hugging Face datasets."""
