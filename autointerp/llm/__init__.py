"""LLM client layer: one async interface (``LLMClient``) over an OpenAI-compatible server or an in-process model."""
