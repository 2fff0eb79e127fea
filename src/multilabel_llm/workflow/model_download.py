"""Fetch every Hugging Face model of an experiment into the local hub cache, once, online.

On a cluster the compute nodes usually have no network: the login node downloads each model
(``make download EXPERIMENT=paper``, Snakemake target ``download_models``), and the jobs then
load from the cache with ``HF_HUB_OFFLINE=1`` (rules/models.smk sets it for every job). The
cache is ``$HF_HOME/hub`` (default ``~/.cache/huggingface/hub``); put ``HF_HOME`` on a file
system the compute nodes see.

What is fetched: every model slot that loads from the hub (``hf_id`` set, no ``gguf`` and no
``path``; engine/loading.py uses the first of gguf, path, hf_id), at the slot's ``revision``
(default ``main``; pin a commit for a reproducible run), plus the Demux encoder when a demux
method is configured. Only what ``from_pretrained`` reads: configs, tokenizer files and one
weight format (safetensors when the repo has them, else ``.bin``/``.pt``), never the
``original/`` copies of Llama 3 repos; ``*.py`` only for ``trust_remote_code`` models.
Gated repos (every ``meta-llama/*``) need ``HF_TOKEN`` (or ``hf auth login``) of an account
that accepted the licence; without one the run stops before downloading anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from multilabel_llm.workflow.config import ConfigError, load_config
from multilabel_llm.workflow.studies import methods_of_producer

log = logging.getLogger(__name__)

DEFAULT_REVISION = "main"
# Meta's Llama repos ask every account to accept the licence; the hub also reports `gated`,
# but this prefix lets the missing-token error come before any network call.
GATED_PREFIXES = ("meta-llama/",)
# Configs and tokenizers: config.json, generation_config.json, tokenizer.json,
# tokenizer_config.json, the safetensors index; tokenizer.model (Llama-2, Mistral),
# merges.txt + vocab.json (Qwen), vocab.txt (BERT).
CONFIG_PATTERNS = ("*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.txt")
# Llama 3 repos repeat every weight as consolidated .pth files under original/ (doubling a
# 70B download to ~280 GB); transformers never reads them.
IGNORE_PATTERNS = ("original/*",)
# One weight format, in transformers' order of preference.
WEIGHT_FORMATS = ((".safetensors", "*.safetensors"), (".bin", "*.bin"), (".pt", "*.pt"))
# The libraries whose version decides what a model computes: part of the between-workflow
# cache key of inference outputs (rules/models.smk SOFTWARE).
KEY_SOFTWARE = ("torch", "transformers")


class DownloadError(RuntimeError):
    """A model that cannot be fetched as configured (token, revision, repo, network)."""


@dataclass(frozen=True)
class ModelDownload:
    """One hub repo at one revision, and the config keys that asked for it."""

    repo_id: str
    revision: str
    config_keys: tuple[str, ...]  # e.g. ("models.llama3-8b",): named in every error
    trust_remote_code: bool = False

    @property
    def gated(self) -> bool:
        return self.repo_id.startswith(GATED_PREFIXES)


@dataclass
class Fetched:
    """A finished download, as recorded in the manifest."""

    repo_id: str
    revision: str
    commit: str
    config_keys: list[str]
    allow_patterns: list[str]
    path: str
    files: list[str] = field(default_factory=list)


def software_versions() -> dict[str, str | None]:
    """Installed versions of KEY_SOFTWARE (None where one is not installed); no imports."""
    versions: dict[str, str | None] = {}
    for name in KEY_SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _hub_source(model: dict) -> bool:
    """True when engine/loading.py would load this model config from the hub."""
    return bool(model.get("hf_id")) and not model.get("gguf") and not model.get("path")


def planned_downloads(cfg: dict) -> list[ModelDownload]:
    """Every hub repo the composed config ``cfg`` loads, one entry per (repo, revision)."""
    wanted: dict[tuple[str, str], list[str]] = {}
    remote_code: dict[tuple[str, str], bool] = {}

    def add(key: str, entry: dict) -> None:
        revision = entry.get("revision") or DEFAULT_REVISION
        if not isinstance(revision, str):
            raise DownloadError(
                f"config key '{key}.revision': expected a branch, tag or commit hash, "
                f"got {revision!r}"
            )
        repo = (str(entry["hf_id"]), revision)
        wanted.setdefault(repo, []).append(key)
        remote_code[repo] = remote_code.get(repo, False) or bool(entry.get("trust_remote_code"))

    for slot, model in sorted((cfg.get("models") or {}).items()):
        if _hub_source(model or {}):
            add(f"models.{slot}", model)
    # by kind, not slot name: any slot whose distributions come from the Demux rule
    uses_demux = bool(methods_of_producer(cfg, "demux"))
    encoder = ((cfg.get("training") or {}).get("demux") or {}).get("encoder") or {}
    if uses_demux and encoder.get("hf_id"):
        add("training.demux.encoder", encoder)
    return [
        ModelDownload(repo, revision, tuple(keys), remote_code[(repo, revision)])
        for (repo, revision), keys in wanted.items()
    ]


def allow_patterns(repo_files: list[str], download: ModelDownload) -> list[str]:
    """What to fetch of a repo with these files: configs, tokenizer, one weight format."""
    readable = [f for f in repo_files if not f.startswith("original/")]
    for suffix, pattern in WEIGHT_FORMATS:
        if any(f.endswith(suffix) for f in readable):
            weights = [pattern]
            break
    else:
        raise DownloadError(
            f"config key '{download.config_keys[0]}.hf_id': {download.repo_id}@"
            f"{download.revision} has no weights that transformers loads "
            f"(no {', '.join(s for s, _ in WEIGHT_FORMATS)} files outside original/)"
        )
    code = ["*.py"] if download.trust_remote_code else []
    return [*CONFIG_PATTERNS, *weights, *code]


def _token() -> str | None:
    from huggingface_hub import get_token

    return get_token()  # HF_TOKEN, else the token `hf auth login` stored under HF_HOME


def _licence_message(downloads: list[ModelDownload], has_token: bool) -> str:
    lines = [
        f"  - {d.repo_id} ({', '.join(d.config_keys)}): "
        f"accept the licence at https://huggingface.co/{d.repo_id}"
        for d in downloads
    ]
    if has_token:
        head = "the Hugging Face token has no access to these gated models:"
    else:
        head = (
            "these models are gated and no Hugging Face token is set: export HF_TOKEN=hf_... "
            "(a read token of an account that accepted the licence; "
            "https://huggingface.co/settings/tokens) or run `hf auth login`:"
        )
    return "\n".join([head, *lines])


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise DownloadError(
            "HF_HUB_OFFLINE is set, so nothing can be downloaded: run the download on a host "
            "with network access (the login node) without HF_HUB_OFFLINE=1 "
            "(`make download` and the download_models rule clear it)"
        )


def resolve(download: ModelDownload, token: str | None) -> tuple[str, list[str]]:
    """(commit, file list) of the repo at the configured revision; errors name the key."""
    import huggingface_hub
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    key = download.config_keys[0]
    try:
        info = huggingface_hub.HfApi().model_info(
            download.repo_id, revision=download.revision, token=token
        )
    except GatedRepoError:
        raise DownloadError(_licence_message([download], token is not None)) from None
    except RevisionNotFoundError:
        raise DownloadError(
            f"config key '{key}.revision': {download.revision!r} is not a branch, tag or "
            f"commit of {download.repo_id}"
        ) from None
    except RepositoryNotFoundError:
        raise DownloadError(
            f"config key '{key}.hf_id': {download.repo_id!r} is not a model repo on the hub "
            f"(or it is private and the token cannot see it)"
        ) from None
    return str(info.sha), [s.rfilename for s in info.siblings or []]


def fetch_all(downloads: list[ModelDownload]) -> list[Fetched]:
    """Download every entry into the hub cache; nothing starts unless all can be fetched."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    _check_online()
    token = _token()
    gated = [d for d in downloads if d.gated]
    if gated and token is None:
        raise DownloadError(_licence_message(gated, has_token=False))
    # resolve everything first: a wrong revision or a missing licence stops the run before
    # hours of downloading, not after
    plans = []
    for download in downloads:
        if download.revision == DEFAULT_REVISION:
            log.warning(
                "%s: revision 'main' of %s is not pinned; set %s.revision to a commit hash "
                "(the manifest records the commit used now)",
                download.config_keys[0],
                download.repo_id,
                download.config_keys[0],
            )
        commit, files = resolve(download, token)
        plans.append((download, commit, allow_patterns(files, download)))
    fetched = []
    for download, commit, patterns in plans:
        log.info("fetching %s@%s (%s): %s", download.repo_id, download.revision, commit, patterns)
        try:
            # the configured revision, not the commit: a branch name is then also recorded in
            # the cache's refs/, so an offline from_pretrained(revision=...) finds it
            path = huggingface_hub.snapshot_download(
                download.repo_id,
                revision=download.revision,
                allow_patterns=patterns,
                ignore_patterns=list(IGNORE_PATTERNS),
                token=token,
            )
        except GatedRepoError:
            raise DownloadError(_licence_message([download], token is not None)) from None
        snapshot = Path(path)
        fetched.append(
            Fetched(
                repo_id=download.repo_id,
                revision=download.revision,
                commit=snapshot.name or commit,
                config_keys=list(download.config_keys),
                allow_patterns=patterns,
                path=str(snapshot),
                files=sorted(
                    str(f.relative_to(snapshot)) for f in snapshot.rglob("*") if f.is_file()
                ),
            )
        )
    return fetched


def write_manifest(fetched: list[Fetched], path: str | Path) -> None:
    """What was fetched, at which commit, with which software (JSON)."""
    manifest = {"software": software_versions(), "models": [asdict(f) for f in fetched]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def download_from_params(downloads: list[dict[str, Any]], manifest: str | Path) -> list[Fetched]:
    """Entry point of rule download_models: ``downloads`` as :func:`as_params` wrote them."""
    plan = [
        ModelDownload(
            d["repo_id"], d["revision"], tuple(d["config_keys"]), bool(d["trust_remote_code"])
        )
        for d in downloads
    ]
    fetched = fetch_all(plan)
    write_manifest(fetched, manifest)
    return fetched


def as_params(downloads: list[ModelDownload]) -> list[dict[str, Any]]:
    """JSON-ready form for Snakemake params (a changed revision reruns the download)."""
    return [{**asdict(d), "config_keys": list(d.config_keys)} for d in downloads]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multilabel_llm.workflow.model_download",
        description="Download every Hugging Face model of an experiment into HF_HOME.",
    )
    parser.add_argument("--experiment", default="paper", help="config/experiment/<NAME>.yaml")
    parser.add_argument(
        "--overrides", default="", help='Hydra overrides, as in --config overrides="..."'
    )
    parser.add_argument("--manifest", help="write what was fetched (JSON) here")
    parser.add_argument(
        "--list", action="store_true", help="only print repo, revision and config keys"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    items = {"experiment": args.experiment}
    if args.overrides:
        items["overrides"] = args.overrides
    try:
        downloads = planned_downloads(load_config(items))
        if args.list:
            for d in downloads:
                gated = "gated" if d.gated else "open"
                print(f"{d.repo_id}\t{d.revision}\t{gated}\t{','.join(d.config_keys)}")
            return 0
        fetched = fetch_all(downloads)
    except (ConfigError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.manifest:
        write_manifest(fetched, args.manifest)
    for f in fetched:
        print(f"{f.repo_id}\t{f.revision}\t{f.commit}\t{len(f.files)} files\t{f.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
