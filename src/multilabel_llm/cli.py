"""``multilabel-llm``: the library from the command line, without Snakemake.

``trace``  one dataset x model x prompt -> ``traces.jsonl.gz`` (+ ``traces.meta.json``), through
           the same engine call as the workflow's ``extract_traces`` rule;
``score``  traces (estimated with the named methods) and/or distribution files -> NLL, L1 and
           example-F1 with bootstrap CIs against the human distribution, as a CSV;
``plan``   the cluster cost plan (``python -m multilabel_llm.workflow.cluster_plan``; needs the
           ``workflow`` extra, since it reads Snakemake's dry run and the SLURM partitions).

Datasets, models, prompts and methods are slot names of a composed experiment
(``--experiment``, default ``demo``) or YAML files of one config each; a prepared dataset
directory (``examples.parquet`` + ``meta.json``, as rule ``prepare_dataset`` writes it) can
be given with ``--data``. Every bad input stops with a message that names the flag or file.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

PROG = "multilabel-llm"


class CliError(Exception):
    """A bad command-line input; the message names the flag or file."""


# ------------------------------------------------------------------------------ inputs


class _Config:
    """The composed experiment, loaded on first use (Hydra composition takes a second)."""

    def __init__(self, experiment: str, overrides: list[str]):
        self.experiment, self.overrides, self._cfg = experiment, overrides, None

    def get(self) -> dict:
        if self._cfg is None:
            from multilabel_llm.workflow.config import ConfigError, load_config

            items = {"experiment": self.experiment}
            if self.overrides:
                items["overrides"] = " ".join(self.overrides)
            try:
                self._cfg = load_config(items)
            except ConfigError as err:
                raise CliError(f"--experiment {self.experiment}: {err}") from err
        return self._cfg


def _yaml_file(flag: str, value: str) -> dict | None:
    """``value`` read as a YAML config file, or None when it is not a file name."""
    if not value.endswith((".yaml", ".yml", ".json")):
        return None
    import yaml

    path = Path(value)
    if not path.is_file():
        raise CliError(f"{flag}: file {value} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CliError(f"{flag}: {value} is not valid YAML: {err}") from err
    if not isinstance(cfg, dict):
        raise CliError(f"{flag}: {value} holds no mapping (one config, as in config/{flag[2:]}/)")
    return cfg


def _slot(flag: str, group: str, value: str, config: _Config) -> dict:
    """A config from a YAML file, else the experiment's slot ``value`` of ``group``."""
    cfg = _yaml_file(flag, value)
    if cfg is not None:
        cfg.setdefault("name", Path(value).stem)
        return cfg
    slots = config.get().get(group) or {}
    if value not in slots:
        raise CliError(
            f"{flag}: {value!r} is neither a YAML file nor a {group} slot of experiment "
            f"{config.experiment!r}; slots: {sorted(slots)}"
        )
    return dict(slots[value])


def _dataset(args, config: _Config):
    """``(dataset, dataset config or {})`` from ``--data DIR`` or ``--dataset SLOT|FILE``."""
    if args.data and args.dataset:
        raise CliError("give one of --data DIR and --dataset NAME, not both")
    if args.data:
        from multilabel_llm.data.canonical import load_canonical

        path = Path(args.data)
        missing = [f for f in ("examples.parquet", "meta.json") if not (path / f).is_file()]
        if missing:
            raise CliError(
                f"--data: {path} lacks {', '.join(missing)} (a prepared dataset directory, "
                "as rule prepare_dataset writes under results/data/<dataset>/)"
            )
        return load_canonical(path), {}
    if not args.dataset:
        raise CliError("give the dataset: --dataset NAME (or a YAML file) or --data DIR")
    from multilabel_llm.data import prepare
    from multilabel_llm.workflow.config import REPO_ROOT

    cfg = _slot("--dataset", "datasets", args.dataset, config)
    try:
        return prepare(cfg, root=args.root or REPO_ROOT), cfg
    except (OSError, ValueError) as err:
        raise CliError(f"--dataset {args.dataset}: {err}") from err


def _ids(args, dataset, default: list[str] | None = None) -> list[str]:
    if args.ids and args.split:
        raise CliError("give one of --ids FILE and --split NAME, not both")
    if args.ids:
        from multilabel_llm.core.io import read_id_list

        if not Path(args.ids).is_file():
            raise CliError(f"--ids: file {args.ids} does not exist")
        ids = [str(i) for i in read_id_list(args.ids)]
        unknown = sorted(set(ids) - set(dataset.examples["id"].astype(str)))
        if unknown:
            raise CliError(
                f"--ids: {len(unknown)} ids of {args.ids} are not in dataset {dataset.name}, "
                f"e.g. {unknown[:3]}"
            )
    elif args.split:
        frame = dataset.examples
        splits = sorted(frame["split"].astype(str).unique())
        if args.split not in splits:
            raise CliError(f"--split: {args.split!r} is not a split of {dataset.name}: {splits}")
        ids = frame.loc[frame["split"] == args.split, "id"].astype(str).tolist()
    elif default is not None:
        ids = list(default)
    else:
        raise CliError("give the examples: --ids FILE (one id per line) or --split NAME")
    if args.limit is not None:
        if args.limit < 1:
            raise CliError(f"--limit: {args.limit}; expected a positive number")
        ids = ids[: args.limit]
    return ids


# ---------------------------------------------------------------------------- commands


def cmd_trace(args) -> int:
    from multilabel_llm.data.prompts import pick_template
    from multilabel_llm.engine.backend import backend_class, engine_for
    from multilabel_llm.engine.identity import run_identity
    from multilabel_llm.engine.model_spec import ModelSpec
    from multilabel_llm.engine.run import extract_traces, set_threads

    config = _Config(args.experiment, args.override)
    dataset, dataset_cfg = _dataset(args, config)
    ids = _ids(args, dataset)
    model_cfg = _slot("--model", "models", args.model, config)
    prompt_cfg = _slot("--prompt", "prompts", args.prompt, config)
    out = Path(args.out)
    if not out.name.endswith(".jsonl.gz"):
        raise CliError(f"--out: {args.out}: expected a traces file name ending in .jsonl.gz")
    set_threads(args.threads or model_cfg.get("threads"))
    needs = (
        () if prompt_cfg.get("label_scoring", "first_token") == "first_token" else ("lookahead",)
    )
    try:
        # the model's engine (backend: hf | vllm), as the workflow's extract_traces rule picks it
        spec = ModelSpec.from_config(model_cfg, device=args.device)
        backend = backend_class(engine_for(model_cfg, *needs)).load(model_cfg, spec)
    except (OSError, ValueError, RuntimeError) as err:
        raise CliError(f"--model {args.model}: {err}") from err
    demo_split = args.demo_split or dataset_cfg.get("demo_split", "train")
    try:
        summary = extract_traces(
            dataset,
            ids,
            backend,
            backend.tokenizer,
            prompt_cfg,
            out,
            model_name=str(model_cfg.get("name", args.model)),
            demo_split=demo_split,
            template=pick_template(prompt_cfg, dataset_cfg.get("loader"), dataset.name),
            shard_size=int(model_cfg.get("shard_size", 64)),
            batch_size=args.batch_size or int(model_cfg.get("batch_size", 16)),
            identity=run_identity(model_cfg),
            max_context=model_cfg.get("max_context"),
            too_long=model_cfg.get("too_long_prompts", "fail"),
        )
    finally:
        backend.close()
    print(
        f"{out}: {summary['n']} traces ({summary['n_unparseable']} unparseable outputs)",
        file=sys.stderr,
    )
    return 0


def _method(flag: str, name: str, config: _Config) -> tuple[str, dict]:
    from multilabel_llm.methods.registry import ESTIMATED_KINDS

    slots = config.get().get("methods") or {}
    if name in slots:
        cfg = slots[name]
        return str(cfg["kind"]), dict(cfg.get("params") or {})
    if name in ESTIMATED_KINDS:
        return name, {}
    raise CliError(
        f"{flag}: {name!r} is neither a method slot of experiment {config.experiment!r} "
        f"({sorted(slots)}) nor a method kind ({list(ESTIMATED_KINDS)})"
    )


def _read_traces(path: str):
    """A trace file, or a CliError naming it when it is cut short or not a trace file."""
    import gzip
    import json
    import zlib

    from multilabel_llm.core.traces import read_traces

    try:
        return read_traces(path)
    except EOFError:
        raise CliError(
            f"--traces: {path} ends before its compressed stream does (cut short while it was "
            "written or copied?); copy it again or rerun the step that wrote it"
        ) from None
    except (gzip.BadGzipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CliError(f"--traces: {path} is not a readable trace file ({err})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise CliError(f"--traces: {path}: {err}") from None


def _check_traces_match(path: str, traces, dataset) -> None:
    """Traces of another dataset: its labels or ids differ; say so instead of a KeyError."""
    meta, rows = traces
    if list(meta.labels) != list(dataset.labels):
        raise CliError(
            f"--traces: {path} was traced with labels {meta.labels}, dataset {dataset.name} has "
            f"{list(dataset.labels)}; give the dataset the traces were made from"
        )
    known = set(dataset.examples["id"].astype(str))
    foreign = [t.id for t in rows if str(t.id) not in known]
    if foreign:
        raise CliError(
            f"--traces: {len(foreign)} of the {len(rows)} examples of {path} are not in dataset "
            f"{dataset.name}, e.g. {foreign[:3]}; give the dataset the traces were made from"
        )


def cmd_score(args) -> int:
    import pandas as pd

    from multilabel_llm.methods.estimators import estimate
    from multilabel_llm.methods.registry import BREAKDOWN_METHOD_KINDS, method_inputs
    from multilabel_llm.scoring.alignment import BootstrapSettings, score_distribution

    if not args.traces and not args.dist:
        raise CliError("give what to score: --traces FILE with --method NAME, or --dist NAME=FILE")
    if args.method and not args.traces:
        raise CliError("--method estimates from traces: give --traces FILE")
    config = _Config(args.experiment, args.override)
    dataset, _ = _dataset(args, config)
    traces = None
    if args.traces:
        if not Path(args.traces).is_file():
            raise CliError(f"--traces: file {args.traces} does not exist")
        traces = _read_traces(args.traces)
        _check_traces_match(args.traces, traces, dataset)
    default = [t.id for t in traces[1]] if traces else None
    ids = _ids(args, dataset, default)
    if traces:
        missing = sorted(set(ids) - {t.id for t in traces[1]})
        if missing:
            raise CliError(
                f"--traces: {args.traces} has no trace for {len(missing)} of the {len(ids)} "
                f"examples to score, e.g. {missing[:3]}; trace them, or pick ids it has"
            )
    bootstrap = BootstrapSettings(n=args.bootstrap_n, seed=args.seed)
    frames = {}
    for name in args.method or []:
        kind, params = _method("--method", name, config)
        needs = method_inputs(kind, params)
        if "calibration_traces" in needs:
            raise CliError(
                f"--method {name}: kind {kind!r} is fitted on a calibration set; run the "
                "workflow for it, or score compare_to_none"
            )
        if set(needs) & set(BREAKDOWN_METHOD_KINDS):
            raise CliError(f"--method {name}: kind {kind!r} needs breakdown scores, not traces")
        frames[name] = estimate(
            kind, params, ids, dataset.labels, dataset.multilabel, traces=traces, source=name
        )
    for item in args.dist or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CliError(f"--dist: {item!r}; expected NAME=FILE.parquet")
        if not Path(path).is_file():
            raise CliError(f"--dist: file {path} does not exist")
        frames[name] = pd.read_parquet(path)
    rows = []
    for name, frame in frames.items():
        try:
            row = score_distribution(frame, dataset, ids, bootstrap=bootstrap, source=name)
        except ValueError as err:
            raise CliError(f"{name}: {err}") from err
        rows.append({"dataset": dataset.name, "method": name, **row})
    table = pd.DataFrame(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"{args.out}: {len(table)} rows", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


def cmd_plan(argv: list[str]) -> int:
    missing = [
        m
        for m in ("snakemake", "snakemake_executor_plugin_slurm")
        if not importlib.util.find_spec(m)
    ]
    if missing:
        raise CliError(
            f"plan reads Snakemake's dry run and the SLURM partitions: {', '.join(missing)} "
            "not installed; pip install -e '.[workflow]'"
        )
    from multilabel_llm.workflow.cluster_plan import main as plan_main

    return plan_main(argv)


# ------------------------------------------------------------------------------ parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", default="demo", help="experiment whose slots names refer to")
    p.add_argument(
        "--override", action="append", default=[], help="Hydra override (key=value), repeatable"
    )
    p.add_argument("--dataset", help="dataset slot of the experiment, or a dataset YAML file")
    p.add_argument("--data", help="prepared dataset directory (examples.parquet + meta.json)")
    p.add_argument("--root", help="directory the dataset config's files are relative to")
    p.add_argument("--ids", help="file of example ids, one per line")
    p.add_argument("--split", help="all examples of this split")
    p.add_argument("--limit", type=int, help="only the first N ids")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", metavar="{trace,score,plan}")
    sub.required = True
    trace = sub.add_parser("trace", help="trace a model on a dataset: traces.jsonl.gz")
    _common(trace)
    trace.add_argument("--model", required=True, help="model slot or model YAML file")
    trace.add_argument("--prompt", required=True, help="prompt slot or prompt YAML file")
    trace.add_argument("--out", required=True, help="traces file to write (.jsonl.gz)")
    trace.add_argument("--demo-split", help="split the demonstrations come from")
    trace.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the model config's)")
    trace.add_argument("--batch-size", type=int, help="queries decoded together")
    trace.add_argument("--threads", type=int, help="torch CPU threads")
    trace.set_defaults(func=cmd_trace)
    score = sub.add_parser("score", help="alignment metrics of methods/distributions")
    _common(score)
    score.add_argument("--traces", help="traces file the --method estimates read")
    score.add_argument(
        "--method", action="append", help="method slot or kind to estimate, repeatable"
    )
    score.add_argument("--dist", action="append", help="NAME=FILE.parquet to score, repeatable")
    score.add_argument("--bootstrap-n", type=int, default=1000, help="bootstrap resamples")
    score.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    score.add_argument("--out", help="CSV to write (default: stdout)")
    score.set_defaults(func=cmd_score)
    sub.add_parser(
        "plan",
        add_help=False,
        help="cluster cost plan; arguments as python -m multilabel_llm.workflow.cluster_plan",
    )
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["plan"]:
            return cmd_plan(argv[1:])
        args = parser().parse_args(argv)
        return args.func(args)
    except CliError as err:
        command = f" {argv[0]}" if argv and not argv[0].startswith("-") else ""
        print(f"{PROG}{command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
