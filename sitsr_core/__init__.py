"""sitsr_core: super-resolution of Arctic sea-ice thickness with conditional diffusion models."""

__version__ = "0.1.0"
