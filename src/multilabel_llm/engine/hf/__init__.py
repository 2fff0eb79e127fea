"""The Hugging Face engine (ours): greedy tracing over a shared-prefix KV cache, hidden states,
attention weights, the lookahead scoring and the token-level marginalisation search. Reached
from the generic engine only through the backend registry (engine/backend.py)."""
