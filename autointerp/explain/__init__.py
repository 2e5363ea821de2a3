"""Auto-interp: LLM clients, the explainer and label scorers (planned)."""
