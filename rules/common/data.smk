# Helpers of rules/data.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

from multilabel_llm.datasets import input_files as dataset_input_files


from multilabel_llm.testsets import input_files as testset_input_files


from multilabel_llm.testsets import get_testset_cfg


from multilabel_llm.studies import evaluated_testsets


def pool_testsets(dataset):
    """Test sets whose ids the dataset's shared demo pool leaves out: all that are evaluated."""
    return evaluated_testsets(config, STUDIES, dataset)


def demo_shots_needed():
    """The most demonstrations any prompt (or its dataset templates) or breakdown asks for."""
    shots = [int(config["breakdown"].get("n_shots", 10))]
    for name in PROMPTS:
        cfg = prompt_cfg(name)
        shots.append(int(cfg.get("n_shots", 10)))
        shots += [
            int(t["n_shots"])
            for t in (cfg.get("templates") or {}).values()
            if "n_shots" in (t or {})
        ]
    return max(shots)
