"""The assumptions of the cost plan, all in one place: GPU peaks, the roofline knobs, model
and encoder sizes, and the documented dataset sizes (docs/cluster_plan.md explains each)."""

from __future__ import annotations

from dataclasses import dataclass

from multilabel_llm.engine.model_spec import DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class GPU:
    """Dense bf16 tensor-core peak and HBM bandwidth (vendor datasheets, no sparsity)."""

    bf16_tflops: float
    hbm_gb_s: float
    source: str


GPUS: dict[str, GPU] = {
    "a100": GPU(312.0, 2039.0, "NVIDIA A100 80GB SXM datasheet"),
    "a40": GPU(149.7, 696.0, "NVIDIA A40 datasheet (299.4 TFLOP/s is with sparsity)"),
    "h100": GPU(989.0, 3350.0, "NVIDIA H100 SXM datasheet"),
    "h200": GPU(989.0, 4800.0, "NVIDIA H200 SXM datasheet"),
    "l40s": GPU(362.0, 864.0, "NVIDIA L40S datasheet"),
}


@dataclass(frozen=True)
class Assumptions:
    """The knobs of the estimate; docs/cluster_plan.md explains each one."""

    mfu: float = 0.40  # share of bf16 peak a forward pass over many tokens reaches (HF, SDPA)
    train_mfu: float = 0.30  # the same for LoRA / encoder training steps
    hbm_efficiency: float = 0.70  # share of HBM bandwidth a weight-streaming decode step reaches
    load_gb_per_s: float = 2.0  # weights read from disk per job (GPUs are held meanwhile)
    train_factor: float = 3.0  # FLOPs of a training token / forward FLOPs (see docs)
    chars_per_token: float = 4.0  # English text and templates
    label_tokens: float = 2.0  # one label name in a list ("joy, ")
    # a demo's label answer; with label_tokens, calibrated on the bundled tokenizer (docs)
    answer_tokens: tuple = (("json", 12.0), ("comma", 4.0))
    trace_batch_size: int = DEFAULT_BATCH_SIZE  # engine default (engine/model_spec.py) on CPU
    breakdown_batch_size: int = DEFAULT_BATCH_SIZE
    default_gpu: str = "a100"  # when neither the job nor its partition names a known GPU
    # vLLM: start-up (memory profiling, CUDA graph capture) on top of reading the weights, and
    # the share of linear speed-up tensor parallelism keeps (all-reduce per layer). Our engine
    # places a model over several GPUs with a device map, where one GPU works at a time.
    vllm_startup_s: float = 120.0
    vllm_tp_efficiency: float = 0.8

    def answer(self, label_format: str) -> float:
        return dict(self.answer_tokens).get(label_format, 12.0)


ASSUMPTIONS = Assumptions()

# Parameters by the size token in a model's name ("llama-3.1-70b" -> 70b); model cards.
MODEL_PARAMS: dict[str, float] = {
    "135m": 0.135e9,  # SmolLM2-135M
    "1b": 1.24e9,  # Llama-3.2-1B
    "7b": 7.62e9,  # Qwen2.5-7B (Mistral/zephyr-7B: 7.24e9)
    "8b": 8.03e9,  # Llama-3.1-8B
    "70b": 70.6e9,  # Llama-3.1/3.3-70B (Llama-2-70B: 69.0e9)
    "72b": 72.7e9,  # Qwen2.5-72B
}
# When the name has no size token: the resources size class (config/resources).
SIZE_CLASS_PARAMS: dict[str, float] = {
    "tiny": 0.135e9,
    "b1": 1.24e9,
    "b8": 8.03e9,
    "b70": 70.6e9,
}
# Demux encoders (training.demux.encoder package / hf_id); model cards.
ENCODER_PARAMS: dict[str, float] = {
    "minilm": 22.7e6,  # all-MiniLM-L6-v2 (the offline default)
    "bert-base": 110e6,
    "roberta-base": 125e6,
    "bert-large": 340e6,
    "roberta-large": 355e6,
}
DTYPE_BYTES = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float32": 4, "fp32": 4}


@dataclass(frozen=True)
class DatasetStats:
    """Examples per split, label count, mean text length in tokens, and where they come from."""

    splits: dict
    n_labels: int
    text_tokens: float
    source: str


# Keyed by the dataset config's `name`, then its `loader`. Used only where neither the prepared
# dataset (results/data/<slot>/examples.parquet) nor `approx_sizes` in the dataset config exist.
# Text tokens: measured with the bundled SmolLM2 tokenizer on data/ excerpts where we have data,
# else words x 1.3 from the dataset papers (Llama 3's larger vocabulary gives ~10% fewer).
DATASET_STATS: dict[str, DatasetStats] = {
    "goemotions": DatasetStats(
        {"train": 43410, "dev": 5426, "test": 5427},
        7,
        17.0,
        "Demszky et al. 2020 released splits; 7 clusters (paper §A.2); tokens measured on data/goemotions",
    ),
    "mfrc": DatasetStats(
        {"train": 12898, "dev": 1612, "test": 1613},
        6,
        60.0,
        "Trager et al. 2022: 16,123 comments, 80/10/10 assumed for the reference splits.yaml; "
        "6 foundations (paper §A.2); ~45 words per comment",
    ),
    "semeval": DatasetStats(
        {"train": 6838, "dev": 886, "test": 3259},
        11,
        26.0,
        "Mohammad et al. 2018 (SemEval 2018 E-c English); 11 emotions; ~20 words per tweet",
    ),
    "hatexplain": DatasetStats(
        {"train": 15383, "dev": 1922, "test": 1924},
        3,
        29.0,
        "Mathew et al. 2021 post_id_divisions; 3 classes (paper §A.3); tokens measured on data/hatexplain",
    ),
    "msp_podcast": DatasetStats(
        {"train": 84030, "dev": 19815, "test": 30647},
        8,
        20.0,
        "MSP-Podcast v1.11 Train/Development/Test1 (approximate); 8 primary emotions once "
        "'Other' is dropped (paper §A.3); ~15 words per utterance",
    ),
    "boxes": DatasetStats(
        {"train": 500, "dev": 100, "test": 500},
        16,
        67.0,
        "the seeded generator's defaults (config/dataset/boxes.yaml generate:); 16 objects; "
        "tokens measured on the generated examples",
    ),
    "goemotions_demo": DatasetStats(
        {"train": 300, "dev": 100, "test": 50}, 7, 17.0, "data/README.md excerpt"
    ),
    "hatexplain_demo": DatasetStats(
        {"train": 150, "dev": 40, "test": 60}, 3, 29.0, "data/README.md excerpt"
    ),
    "generic": DatasetStats({"train": 4, "test": 4}, 4, 10.0, "data/generic/example.csv"),
}
DEFAULT_STATS = DatasetStats({"train": 1000, "dev": 200, "test": 200}, 8, 30.0, "unknown dataset")

# Breakdown prompts (engine/breakdown.py): header tokens and per-block template tokens.
BREAKDOWN_SHAPE = {"unary": (40.0, 16.0), "binary": (45.0, 14.0)}
