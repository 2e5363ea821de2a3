"""A crosscoder across two tokenizers: one sparse dictionary over both models' word-pooled activations."""
