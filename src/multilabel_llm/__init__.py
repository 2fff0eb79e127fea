"""Library behind the multi-label LLM pipeline: usable without Snakemake."""

__version__ = "0.1.0"

NONE_LABEL = "none"
