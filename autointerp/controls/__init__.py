"""The controls a sharing fraction is read against: the same-model ceiling and the random-weights floor."""
