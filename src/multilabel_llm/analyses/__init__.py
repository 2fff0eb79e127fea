"""The mechanism analyses of paper §4 and §D over traces: per-step statistics, the second
label, label order and position, attention and probe summaries, coverage."""
