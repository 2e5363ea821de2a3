"""Offline label scoring: the scorers (simulation, detection, fuzzing, embedding), each against a shuffled-label baseline, and `autointerp score`."""
