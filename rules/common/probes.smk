# Helpers of rules/probes.smk (input functions, params, target lists); included by
# rules/common.smk so that rule files hold rules only (snakemake --lint).

PROBES_TRAIN = training_cfg()["probes"]["train_testset"]


PROBES_EVAL = training_cfg()["probes"]["eval_testset"]
