"""What a reader sees: tables (Markdown/HTML), figures, the explorer and the comparison with
the paper's own numbers."""
