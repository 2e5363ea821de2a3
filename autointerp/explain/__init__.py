"""Auto-interp labels: LLM clients, prompts, the explainer and the labels table (`autointerp explain`)."""
