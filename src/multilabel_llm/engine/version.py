"""The engine's version, apart so that the workflow can read it without importing torch.

Bump it when a change to the engine alters what it writes for the same inputs. Resumable
shards carry it in their manifest (``engine/run.py``: older shards are recomputed, not merged
with new ones), and the model-bound rules carry it as a param, so finished outputs rerun and
the between-workflow cache key (``--cache``) moves with it.

History: 4 = queries prefilled in length groups (label logits move by up to 1e-5);
5 = the shared prefix attended once for the batch (``engine/hf/shared_prefix.py``, the same up
to float rounding: logits move by up to ~6e-5 on the bundled model).
"""

ENGINE_VERSION = 5
