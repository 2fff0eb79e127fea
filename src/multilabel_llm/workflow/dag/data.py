"""The data stage of the grid (rules/data.smk): the published files and decision files of
prepare_dataset and build_testsets, the evaluated test sets the demo pool leaves out, and how
many demonstrations the pool must hold.

multilabel_llm.data and its testsets module pull in pandas: they are imported inside the
methods that need them, so parsing the workflow stays light.
"""

from __future__ import annotations

from multilabel_llm.methods.registry import BREAKDOWN_METHOD_KINDS
from multilabel_llm.workflow.dag.core import DagCore, file_digest
from multilabel_llm.workflow.studies import evaluated_testsets


class DataStage(DagCore):
    """Datasets, test sets and the shared demo pool."""

    def decided_dataset(self, wc) -> str:
        """Rule prepare_dataset: the dataset config and a digest of each raw file it reads."""
        from multilabel_llm.data import input_files

        cfg = self.dataset(wc.dataset)
        files = {f: file_digest(f, self._digests) for f in input_files(cfg)}
        return self.decided("datasets", wc.dataset, {"config": cfg, "files": files})

    def decided_testset(self, wc) -> str:
        """Rule build_testsets: the test set's config and a digest of its id file, if any."""
        from multilabel_llm.data.testsets import input_files

        cfg = self.testset_cfg(wc)
        files = {
            f: file_digest(f, self._digests)
            for f in input_files(self.dataset(wc.dataset), wc.testset)
        }
        return self.decided(f"testsets/{wc.dataset}", wc.testset, {"config": cfg, "files": files})

    def dataset_files(self, wc) -> list[str]:
        """The dataset's published files that exist (a missing one fails in the loader)."""
        from multilabel_llm.data import input_files

        return input_files(self.dataset(wc.dataset))

    def testset_files(self, wc) -> list[str]:
        from multilabel_llm.data.testsets import input_files

        return input_files(self.dataset(wc.dataset), wc.testset)

    def testset_cfg(self, wc) -> dict:
        from multilabel_llm.data.testsets import get_testset_cfg

        return get_testset_cfg(self.dataset(wc.dataset), wc.testset)

    def evaluated_testsets(self, dataset: str) -> list[str]:
        """Test sets some run of the experiment traces or scores: the shared demo pool (and
        the SFT / Demux dev sets) leave their ids out."""
        return evaluated_testsets(self.config, self.studies, dataset)

    def evaluated_ids(self, wc) -> list[str]:
        return [self.testset_ids(wc.dataset, t) for t in self.evaluated_testsets(wc.dataset)]

    def demo_shots_needed(self, wc) -> int:
        """The most demonstrations the dataset's runs ask for (rule demo_pool's ``need``)."""
        return self.demo_shots_asked(wc.dataset)[0]

    def demo_shots_source(self, wc) -> str:
        """The config key asking for the most demonstrations, named when the pool is short."""
        return self.demo_shots_asked(wc.dataset)[1]

    def demo_shots_asked(self, dataset: str) -> tuple[int, str]:
        """(shots, config key) of the largest demo request of any prompt (or its dataset
        template) and, when a breakdown method scores this dataset, of ``breakdown.n_shots``."""
        asked = [
            (int(self.prompt(name).get("n_shots", 10)), f"prompts.{name}.n_shots")
            for name in self.prompts
        ]
        for name in self.prompts:
            for key, template in (self.prompt(name).get("templates") or {}).items():
                if "n_shots" in (template or {}):
                    asked.append(
                        (int(template["n_shots"]), f"prompts.{name}.templates.{key}.n_shots")
                    )
        if any(
            self.method_kind(run["method"]) in BREAKDOWN_METHOD_KINDS
            for run in self.scored_runs(dataset)
        ):
            asked.append((int(self.config["breakdown"].get("n_shots", 10)), "breakdown.n_shots"))
        return max(asked, key=lambda item: item[0], default=(0, "prompts"))
