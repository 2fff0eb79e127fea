"""The distribution methods of paper §5.2 and the token-level estimators: one registry of
method kinds (registry.py, standard library only) and the functions it names."""
