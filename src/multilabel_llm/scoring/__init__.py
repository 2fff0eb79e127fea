"""Alignment scoring (paper §5.1.2): each method's distributions against the human annotator
distributions (NLL, L1, example-F1, bootstrap intervals), and the tables built from them."""
