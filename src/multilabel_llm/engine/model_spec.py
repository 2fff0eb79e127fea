"""One typed model spec: how a model config is loaded, parsed once and used by every backend.

``ModelSpec.from_config(model_cfg, resources)`` reads a model config
(config/model/<name>.yaml) and, optionally, its size class's resources
(config/resources/size_classes.yaml: ``gpu``, ``gpu_mem_mb``, ``batch_size``) and fixes

* ``dtype``: the configured dtype on GPU (default bfloat16); float32 on CPU, where half
  precision is slow and inexact;
* placement: CPU, one GPU, or ``device_map`` over the job's GPUs (those CUDA lets the job see,
  i.e. ``CUDA_VISIBLE_DEVICES``) with ``max_memory`` from their free memory, whenever the
  weights do not fit one GPU or the size class asks for several. The device map is computed
  by :func:`plan_placement` on the meta device (no weights), so it is testable on CPU;
* ``quantization`` (``8bit`` | ``4bit`` | null): bitsandbytes through transformers'
  ``BitsAndBytesConfig``; a missing bitsandbytes or CUDA is an error, never a fallback;
* ``revision``, ``trust_remote_code``, ``attn_implementation``;
* ``batch_size``: the model's own, else its size class's on GPU, else ``DEFAULT_BATCH_SIZE``;
* the engine's keys (engine/backend.py): ``engine`` (``backend``: hf | vllm), ``max_context``,
  and for vLLM ``tensor_parallel`` (default: the job's GPUs), ``engine_quantization`` (fp8 on
  GPU, int8 weight-only on CPU), ``memory_share`` (vLLM's share of each GPU), ``enforce_eager``
  (default on CPU only) and ``cpu_kv_cache_gb`` (the CPU build's KV space).

``from_pretrained_kwargs(config)`` turns it into the keyword arguments of
``AutoModelForCausalLM.from_pretrained`` (engine/loading.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from multilabel_llm.engine.backend import configured_engine

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
QUANTIZATIONS = ("8bit", "4bit")
# Queries decoded (or breakdown prompts scored) together when neither the model nor its size
# class sets a batch size: small, so CPU runs keep their memory and latency low.
DEFAULT_BATCH_SIZE = 16
# Share of each GPU's free memory given to weights; the rest holds the KV cache (the prefix
# once, engine/hf/shared_prefix.py, plus each row's own tokens), activations and the attention
# pass's maps (whose eager attention still copies the prefix per row).
WEIGHT_SHARE = 0.8
GPU_DTYPE = "bfloat16"  # the GPU default when a model config names no dtype
GB = 1e9


class ModelSpecError(ValueError):
    """A model config (or the machine it runs on) that cannot load as configured."""


class PlacementError(ModelSpecError):
    """The weights do not fit the memory the job was given."""


def parse_dtype(value) -> torch.dtype | str:
    """A torch dtype from a config string (None: float32; ``auto``: the checkpoint's)."""
    if value is None:
        return torch.float32
    if isinstance(value, torch.dtype):
        return value
    if value == "auto":
        return "auto"
    if value not in DTYPES:
        raise ModelSpecError(f"model dtype {value!r}: expected one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[value]


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def visible_gpus() -> int:
    """GPUs this process may use (CUDA honours ``CUDA_VISIBLE_DEVICES``, as SLURM sets it)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def free_gpu_memory(n: int) -> tuple[int, ...]:
    return tuple(int(torch.cuda.mem_get_info(i)[0]) for i in range(n))


def _where(model_cfg: dict, key: str) -> str:
    """How an error names a key: ``models.<slot>.<key>`` when the slot is known."""
    slot = model_cfg.get("slot")
    name = model_cfg.get("name", "<unnamed>")
    return f"config key 'models.{slot}.{key}'" if slot else f"model {name!r}: config key '{key}'"


@dataclass(frozen=True)
class Placement:
    """Where the weights go: ``device_map`` for ``from_pretrained`` (None: CPU, no map)."""

    device_map: dict | None
    model_bytes: int = 0
    device_bytes: dict = field(default_factory=dict)  # weight bytes per device of the map
    max_memory: dict = field(default_factory=dict)  # the budgets the map was computed for

    @property
    def devices(self) -> list:
        return sorted(set((self.device_map or {}).values()), key=str)

    @property
    def offloaded(self) -> list[str]:
        """Modules mapped to host memory or disk (executed on the main device by hooks)."""
        return [k for k, d in (self.device_map or {}).items() if d in ("cpu", "disk")]

    @property
    def needs_offload_folder(self) -> bool:
        return "disk" in (self.device_map or {}).values()


class _QuantSizes:
    """Bytes per parameter under bitsandbytes: nn.Linear weights quantised, except the output
    embedding (transformers keeps ``lm_head`` in full precision); everything else in
    ``dtype``. 4-bit adds the nf4 block scales (double-quantised: ~1 byte per 64 weights)."""

    def __init__(self, model, quantization: str, dtype: torch.dtype):
        out = model.get_output_embeddings()
        self.quantized = {
            f"{name}.weight"
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not out
        }
        self.weight_bytes = 1.0 if quantization == "8bit" else 0.5 + 1 / 64
        self.dtype_bytes = torch.finfo(dtype).bits // 8

    def __call__(self, name: str, numel: int) -> float:
        return numel * (self.weight_bytes if name in self.quantized else self.dtype_bytes)


def _meta_model(config, dtype: torch.dtype, trust_remote_code: bool = False):
    """The architecture with every weight on the meta device (no memory, ~1 s for a 70B)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, trust_remote_code=trust_remote_code
        )
    model.tie_weights()
    return model


def _module_sizes(model, dtype: torch.dtype, quantization: str | None) -> dict[str, int]:
    """Bytes per module prefix ('' is the whole model), tied weights counted once."""
    sizes: dict[str, float] = {}
    quant = _QuantSizes(model, quantization, dtype) if quantization else None
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        size = quant(name, tensor.numel()) if quant else tensor.numel() * dtype.itemsize
        if not tensor.is_floating_point():
            size = tensor.numel() * tensor.element_size()
        parts = name.split(".")
        for k in range(len(parts) + 1):
            key = ".".join(parts[:k])
            sizes[key] = sizes.get(key, 0) + size
    return {k: int(v) for k, v in sizes.items()}


def gpu_budgets(memory: list[int] | tuple[int, ...], share: float = WEIGHT_SHARE) -> dict:
    """``max_memory`` for weights: ``share`` of each GPU's (free) memory."""
    return {i: int(m * share) for i, m in enumerate(memory)}


def plan_placement(
    config,
    max_memory: dict,
    *,
    dtype: torch.dtype = torch.bfloat16,
    quantization: str | None = None,
    trust_remote_code: bool = False,
    allow_offload: bool = False,
    balanced: bool = True,
    name: str = "model",
) -> Placement:
    """The device map ``from_pretrained`` gets for ``config`` under ``max_memory``.

    Computed on the meta device with accelerate (``init_empty_weights`` +
    ``infer_auto_device_map``), decoder layers never split, memory balanced over the GPUs
    (as transformers' ``device_map="auto"``). Modules that fit no GPU would go to host
    memory or disk: with ``allow_offload`` that is the plan (``max_memory`` may then name
    ``"cpu"``), otherwise it is a :class:`PlacementError` that says what would help.
    """
    from accelerate import infer_auto_device_map
    from accelerate.utils import CustomDtype, get_balanced_memory

    if quantization not in (None, *QUANTIZATIONS):
        raise ModelSpecError(f"quantization {quantization!r}: expected one of {QUANTIZATIONS}")
    model = _meta_model(config, dtype, trust_remote_code)
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    size_dtype, special = dtype, None
    budgets = dict(max_memory)
    if quantization:
        quant = _QuantSizes(model, quantization, dtype)
        size_dtype = torch.int8 if quantization == "8bit" else CustomDtype.INT4
        special = {n: dtype for n, _ in model.named_parameters() if n not in quant.quantized}
        # bitsandbytes needs room for buffers created while quantising (as transformers does)
        budgets = {k: int(v * 0.9) for k, v in budgets.items()}
    quiet = logging.getLogger("accelerate.utils.modeling")
    level = quiet.level
    # Planning for GPUs this machine lacks (a CPU test, a login node) is the point; accelerate
    # would warn that each is "not available".
    quiet.setLevel(logging.ERROR)
    try:
        if balanced:
            budgets = get_balanced_memory(
                model,
                budgets,
                no_split_module_classes=no_split,
                dtype=size_dtype,
                special_dtypes=special,
            )
        device_map = dict(
            infer_auto_device_map(
                model,
                budgets,
                no_split_module_classes=no_split,
                dtype=size_dtype,
                special_dtypes=special,
            )
        )
    finally:
        quiet.setLevel(level)
    sizes = _module_sizes(model, dtype, quantization)
    per_device: dict = {}
    for module, device in device_map.items():
        per_device[device] = per_device.get(device, 0) + sizes.get(module, 0)
    plan = Placement(device_map, sizes[""], per_device, budgets)
    if plan.offloaded and not allow_offload:
        gpus = [k for k in max_memory if k not in ("cpu", "disk")]
        per_gpu = max((max_memory[k] for k in gpus), default=0)
        kind = f"{quantization} " if quantization else ""
        raise PlacementError(
            f"model {name}: {sizes[''] / GB:.1f} GB of {kind}{str(dtype).removeprefix('torch.')} "
            f"weights do not fit {len(gpus)} GPU(s) with {per_gpu / GB:.1f} GB each for weights "
            f"({len(plan.offloaded)} modules, e.g. {plan.offloaded[0]!r}, would be offloaded "
            f"to host memory or disk, which is not done silently): give the job more GPUs "
            f"(the size class's `gpu` in config/resources/size_classes.yaml) or set the "
            f"model's `quantization: 8bit` (or 4bit)"
        )
    return plan


def load_arch_config(path):
    """A transformers config from a ``config.json`` file (or a checkpoint dir), offline."""
    import json

    from transformers import AutoConfig

    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    values = json.loads(path.read_text(encoding="utf-8"))
    return AutoConfig.for_model(values.pop("model_type"), **values)


@dataclass(frozen=True)
class ModelSpec:
    """How one model loads and runs. Build it with :meth:`from_config`."""

    name: str
    device: str  # "cpu" or "cuda"
    dtype: torch.dtype | str  # a torch dtype, or "auto" (the checkpoint's own)
    gpus: int = 0  # GPUs the job may use (0 on CPU)
    gpu_memory: tuple[int, ...] = ()  # free bytes per usable GPU
    several_gpus: bool = False  # the size class asks for several GPUs: spread over them
    quantization: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_memory: dict | None = None  # explicit budgets (may offload to "cpu"/disk): tests, checks
    offload_folder: str | None = None
    engine: str = "hf"  # the model's `backend` (engine/backend.py)
    max_context: int | None = None  # context length in tokens (None: the checkpoint's)
    tensor_parallel: int = 1  # vLLM: GPUs every layer is split over
    engine_quantization: str | None = None  # vLLM's own quantisation (fp8, int8 weight-only)
    memory_share: float | None = None  # vLLM: share of each GPU it takes (None: its default)
    enforce_eager: bool = True  # vLLM: skip graph capture (default on CPU only)
    cpu_kv_cache_gb: float = 2.0  # vLLM's CPU build: host memory for its KV cache

    @classmethod
    def from_config(
        cls,
        model_cfg: dict,
        resources: dict | None = None,
        device: str | None = None,
        *,
        max_memory: dict | None = None,
        offload_folder: str | None = None,
    ) -> ModelSpec:
        """Parse ``model_cfg`` (+ its size class's ``resources``) once; errors name the key.

        ``resources`` defaults to ``model_cfg["resources"]`` (the size class the workflow
        passes with the model); ``device`` overrides ``model_cfg["device"]``.
        """
        cfg = dict(model_cfg or {})
        res = dict(resources if resources is not None else cfg.get("resources") or {})
        name = str(cfg.get("name") or "<unnamed>")
        dev = _parse_device(device or cfg.get("device"), cfg)
        quant = cfg.get("quantization")
        if quant not in (None, *QUANTIZATIONS):
            raise ModelSpecError(
                f"{_where(cfg, 'quantization')}: {quant!r} is not allowed; "
                f"allowed values: {list(QUANTIZATIONS)} or null"
            )
        if quant and dev == "cpu":
            raise ModelSpecError(
                f"{_where(cfg, 'quantization')}: {quant} loading needs a CUDA GPU "
                f"(bitsandbytes), but this job runs on CPU "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}, "
                f"torch.cuda.is_available()={torch.cuda.is_available()}); run it on a GPU "
                f"size class or set quantization: null"
            )
        if quant and not bitsandbytes_available():
            raise ModelSpecError(
                f"{_where(cfg, 'quantization')}: {quant} loading needs bitsandbytes, which is "
                f"not installed: pip install 'multilabel-llm[gpu]' (or pip install bitsandbytes)"
            )
        dtype = parse_dtype(cfg.get("dtype") or GPU_DTYPE) if dev == "cuda" else torch.float32
        trust = cfg.get("trust_remote_code", False)
        if not isinstance(trust, bool):
            raise ModelSpecError(
                f"{_where(cfg, 'trust_remote_code')}: expected true or false, got {trust!r}"
            )
        for key in ("revision", "attn_implementation"):
            if cfg.get(key) is not None and not isinstance(cfg[key], str):
                raise ModelSpecError(f"{_where(cfg, key)}: expected a string, got {cfg[key]!r}")
        gpus, memory, several = 0, (), False
        if dev == "cuda":
            gpus = visible_gpus()
            wanted = int(res.get("gpu") or 0)
            if wanted and wanted < gpus:
                gpus = wanted  # the job's share of a bigger machine (no SLURM masking)
            elif wanted > gpus:
                log.warning(
                    "model %s: the size class asks for %d GPUs, this job sees %d "
                    "(CUDA_VISIBLE_DEVICES=%s); placing over those",
                    name,
                    wanted,
                    gpus,
                    os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
                )
            memory = free_gpu_memory(gpus)
            if res.get("gpu_mem_mb"):  # a site's stated per-GPU memory caps the free memory
                memory = tuple(min(m, int(res["gpu_mem_mb"]) * 2**20) for m in memory)
            several = wanted > 1 and gpus > 1
        engine = _engine_keys(cfg, dev, gpus)
        return cls(
            **engine,
            name=name,
            device=dev,
            dtype=dtype,
            gpus=gpus,
            gpu_memory=memory,
            several_gpus=several,
            quantization=quant,
            revision=cfg.get("revision"),
            trust_remote_code=trust,
            attn_implementation=cfg.get("attn_implementation"),
            batch_size=_batch_size(cfg, res, dev),
            max_memory=dict(max_memory) if max_memory else None,
            offload_folder=offload_folder,
        )

    def torch_dtype(self, config=None) -> torch.dtype:
        """The dtype weights take (``auto``: the checkpoint's own, else bfloat16)."""
        if isinstance(self.dtype, torch.dtype):
            return self.dtype
        own = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        return parse_dtype(own) if isinstance(own, str) else (own or torch.bfloat16)

    @property
    def input_device(self) -> torch.device:
        """Where inputs go: CPU, or the first GPU (the embeddings' device in every map)."""
        return torch.device("cpu" if self.device == "cpu" else "cuda:0")

    def placement(self, config) -> Placement:
        """CPU, one GPU when the weights fit it (unless several are asked for), else a
        balanced map over the job's GPUs; an error when they fit nowhere."""
        dtype = self.torch_dtype(config)
        plan_kw = dict(
            dtype=dtype,
            quantization=self.quantization,
            trust_remote_code=self.trust_remote_code,
            name=self.name,
        )
        if self.max_memory is not None:
            return plan_placement(config, self.max_memory, allow_offload=True, **plan_kw)
        if self.device == "cpu":
            return Placement(None)
        if self.gpus == 0:
            raise ModelSpecError(f"model {self.name}: device cuda, but no GPU is visible")
        budgets = gpu_budgets(self.gpu_memory)
        if not self.several_gpus:
            try:
                one = plan_placement(config, {0: budgets[0]}, balanced=False, **plan_kw)
                return Placement({"": 0}, one.model_bytes, {0: one.model_bytes}, one.max_memory)
            except PlacementError:
                if self.gpus == 1:
                    raise
        return plan_placement(config, budgets, **plan_kw)

    def quantization_config(self):
        """transformers' ``BitsAndBytesConfig`` for ``quantization`` (None without)."""
        if not self.quantization:
            return None
        from transformers import BitsAndBytesConfig

        if self.quantization == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        compute = self.dtype if self.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        # QLoRA's recipe (the paper's code): nf4, double quantisation, bf16 compute
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )

    def from_pretrained_kwargs(self, config=None) -> dict:
        """Keyword arguments for ``AutoModelForCausalLM.from_pretrained``.

        ``config`` (the checkpoint's transformers config) is needed to place a GPU model;
        without it a GPU model goes to one GPU.
        """
        kwargs: dict = {"dtype": self.torch_dtype(config) if config is not None else self.dtype}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.trust_remote_code:
            kwargs["trust_remote_code"] = True
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        quant = self.quantization_config()
        if quant is not None:
            kwargs["quantization_config"] = quant
        if config is not None:
            plan = self.placement(config)
        else:
            plan = Placement(None if self.device == "cpu" else {"": 0})
        if plan.device_map is not None:
            kwargs["device_map"] = plan.device_map
        if plan.needs_offload_folder:
            if not self.offload_folder:
                raise ModelSpecError(
                    f"model {self.name}: the placement offloads to disk; set an offload_folder"
                )
            kwargs["offload_folder"] = self.offload_folder
        return kwargs

    def describe(self) -> str:
        quant = f", {self.quantization}" if self.quantization else ""
        where = self.device if self.device == "cpu" else f"{self.gpus} GPU(s)"
        return f"{self.name}: {self.torch_dtype()}{quant} on {where}, batch {self.batch_size}"


def _engine_keys(cfg: dict, device: str, gpus: int) -> dict:
    """The engine's fields of :class:`ModelSpec` from the model config (errors name the key)."""
    engine = configured_engine(cfg)
    opts = cfg.get("vllm") or {}
    if opts and engine != "vllm":
        raise ModelSpecError(f"{_where(cfg, 'vllm')}: vLLM settings, but backend is {engine!r}")
    tp = opts.get("tensor_parallel_size") or (max(gpus, 1) if device == "cuda" else 1)
    if device == "cuda" and gpus and int(tp) > gpus:
        raise ModelSpecError(
            f"{_where(cfg, 'vllm.tensor_parallel_size')}: {tp}, but this job sees {gpus} GPU(s)"
        )
    context = cfg.get("max_context")
    return {
        "engine": engine,
        "max_context": int(context) if context else None,
        "tensor_parallel": int(tp),
        "engine_quantization": opts.get("quantization"),
        "memory_share": float(opts["gpu_memory_utilization"])
        if device == "cuda" and opts.get("gpu_memory_utilization")
        else None,
        "enforce_eager": bool(opts.get("enforce_eager", device != "cuda")),
        "cpu_kv_cache_gb": float(opts.get("cpu_kv_cache_gb", 2)),
    }


def _parse_device(value, cfg: dict) -> str:
    if value in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    text = str(value)
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelSpecError(
                f"{_where(cfg, 'device')}: {text!r}, but no CUDA device is available "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})"
            )
        return "cuda"
    raise ModelSpecError(
        f"{_where(cfg, 'device')}: {value!r} is not allowed; allowed values: cpu, cuda, auto"
    )


def _batch_size(cfg: dict, res: dict, device: str) -> int:
    """The model's own batch size, else (on GPU) its size class's, else the default."""
    for key, value, source in (
        ("batch_size", cfg.get("batch_size"), "model"),
        ("batch_size", res.get("batch_size") if device == "cuda" else None, "size class"),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            where = _where(cfg, key) if source == "model" else "size class key 'batch_size'"
            raise ModelSpecError(f"{where}: expected a positive integer, got {value!r}")
        return value
    return DEFAULT_BATCH_SIZE
