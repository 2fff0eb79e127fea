"""The vLLM engine: a worker in vLLM's own Python (worker.py, standard library only on our
side of the pipe) driven by the backend (backend.py). Reached only through the backend
registry (engine/backend.py)."""
