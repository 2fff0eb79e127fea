# Helpers of rules/data.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

from multilabel_llm.datasets import input_files as dataset_input_files


from multilabel_llm.testsets import input_files as testset_input_files


from multilabel_llm.testsets import get_testset_cfg
