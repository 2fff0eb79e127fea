"""The supervised stage of the grid: rules/probes.smk's inputs (the hidden states and traces
of the probe train and eval test sets). rules/sft.smk and rules/demux.smk read only shared
methods: the model slot's params and files (ModelStage), the evaluated test sets (DataStage)
and the distribution writers (EstimatorStage)."""

from __future__ import annotations

from multilabel_llm.workflow.dag.core import DagCore


class SupervisedStage(DagCore):
    """Linear probes (and the SFT / Demux rules' shared inputs, elsewhere)."""

    def probe_inputs(self) -> dict:
        """Hidden states and traces of the probe train and eval test sets of a (dataset, model,
        prompt) (config training.probes.train_testset / eval_testset)."""
        probes = self.training["probes"]
        run = f"{self.results}/traces/{{dataset}}/{{model}}/{{prompt}}"
        return {
            f"{split}_{name}": f"{run}/{probes[split + '_testset']}/{file}"
            for split in ("train", "eval")
            for name, file in (("hidden", "hidden.npz"), ("traces", "traces.jsonl.gz"))
        }
