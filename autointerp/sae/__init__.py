"""SAEs: architectures behind a registry, the sparse backward, the trainer, metrics, CE splicing and the SAELens file format."""
