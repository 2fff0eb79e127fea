"""A resumable stage run in its own process, for tests/workflow/test_fault_kill9.py to SIGKILL.

``python tests/_kill9_child.py SPEC.json`` runs the rule front-end named by the spec's
``stage`` (``marginalize``: :func:`marginalize_from_files`; ``sft``:
:func:`train_sft_from_files`) with the spec's ``kwargs``. So that the kill lands mid-run on a
machine of any speed, the process then holds (sleeps) once its first durable piece exists:
before the second marginalisation shard's search begins, or right after the first SFT
checkpoint's fingerprint is written (at the end of that save). The hold changes no result; the
test kills the process during it.
"""

import json
import logging
import sys
import time

HOLD_SECONDS = 600  # far past the test's own bounds: only a kill ends it


def _hold_marginalization() -> None:
    import multilabel_llm.engine.hf.marginalization as marg

    real, calls = marg.batched_marginals, []

    def paced(*args, **kwargs):
        calls.append(None)
        if len(calls) > 1:  # the first shard is on disk (written before the next search)
            time.sleep(HOLD_SECONDS)
        return real(*args, **kwargs)

    marg.batched_marginals = paced  # marginalize imports it at call time


def _hold_sft() -> None:
    from transformers import TrainerCallback

    import multilabel_llm.supervised.sft as sft

    real = sft._trainer_callbacks

    class HoldAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            time.sleep(HOLD_SECONDS)  # after FingerprintCallback: the checkpoint is complete

    def callbacks(*args, **kwargs):
        return [*real(*args, **kwargs), HoldAfterFirstCheckpoint()]

    sft._trainer_callbacks = callbacks


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    logging.basicConfig(level=logging.INFO)
    if spec["stage"] == "marginalize":
        from multilabel_llm.engine.jobs import marginalize_from_files as run

        _hold_marginalization()
    elif spec["stage"] == "sft":
        from multilabel_llm.supervised.jobs import train_sft_from_files as run

        _hold_sft()
    else:
        raise ValueError(f"{spec_path}: stage {spec['stage']!r}; expected marginalize or sft")
    run(**spec["kwargs"])


if __name__ == "__main__":
    main(sys.argv[1])
