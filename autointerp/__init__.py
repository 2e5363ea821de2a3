"""autointerp: do different language models learn the same concepts?

Pipeline: corpus -> harvest activations -> SAE -> exemplars -> LLM labels -> scores -> cross-model
matching -> reports. Each stage lives in its own subpackage and reads/writes the run directory.
"""

__version__ = "0.1.0"
