"""The Hugging Face cluster workflow, offline: which repos, revisions and files the download
step asks the hub for (a fake hub client), the gated-model message, the offline guard, and the
between-workflow cache key (Snakemake's provenance hash of a trace job) moving with the model
revision and the torch/transformers versions.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub import constants

from multilabel_llm.workflow import model_download as md
from multilabel_llm.workflow.config import load_config

ROOT = Path(__file__).resolve().parents[2]

# What the paper experiment loads from the hub (config/experiment/paper.yaml), by config key.
PAPER_REPOS = {
    "models.llama2-70b": "meta-llama/Llama-2-70b-hf",
    "models.llama2-70b-chat": "meta-llama/Llama-2-70b-chat-hf",
    "models.llama3-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "models.llama3-70b": "meta-llama/Llama-3.1-70B",
    "models.llama3-70b-instruct": "meta-llama/Llama-3.3-70B-Instruct",
    "models.llama3-8b": "meta-llama/Llama-3.1-8B",
    "models.llama3-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "models.medusa-zephyr-7b": "FasterDecoding/medusa-1.0-zephyr-7b-beta",
    "models.qwen25-72b": "Qwen/Qwen2.5-72B",
    "models.qwen25-72b-instruct": "Qwen/Qwen2.5-72B-Instruct",
    "models.qwen25-7b": "Qwen/Qwen2.5-7B",
    "models.qwen25-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "training.demux.encoder": "bert-base-uncased",
}
# Repo listings shaped like the real ones: Llama 3 repeats its weights under original/,
# Llama 2 has .bin next to .safetensors, Medusa ships a .pt head and remote code.
LLAMA3_FILES = [
    "config.json",
    "generation_config.json",
    "model-00001-of-00004.safetensors",
    "model.safetensors.index.json",
    "original/consolidated.00.pth",
    "original/params.json",
    "original/tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
]
LLAMA2_FILES = ["config.json", "pytorch_model-00001-of-00015.bin", "model-00001.safetensors"]
MEDUSA_FILES = ["config.json", "medusa_lm_head.pt", "modeling_medusa.py"]


@pytest.fixture(scope="module")
def paper_config():
    return load_config({"experiment": "paper"})


class FakeHub:
    """Stands in for HfApi.model_info and snapshot_download; records every request."""

    def __init__(self, cache: Path, gated_without_access: tuple[str, ...] = ()):
        self.cache = cache
        self.info_calls: list[tuple[str, str, str | None]] = []
        self.snapshots: list[dict] = []
        self.gated_without_access = gated_without_access

    def files(self, repo_id: str) -> list[str]:
        if repo_id.startswith("meta-llama/Llama-2"):
            return LLAMA2_FILES
        if repo_id.startswith("FasterDecoding/"):
            return MEDUSA_FILES
        return LLAMA3_FILES

    def model_info(self, repo_id, *, revision=None, token=None, **_):
        self.info_calls.append((repo_id, revision, token))
        siblings = [SimpleNamespace(rfilename=f) for f in self.files(repo_id)]
        return SimpleNamespace(sha=f"{abs(hash((repo_id, revision))):040x}"[:40], siblings=siblings)

    def snapshot_download(self, repo_id, *, revision=None, allow_patterns=None, **kwargs):
        if repo_id in self.gated_without_access:
            response = SimpleNamespace(headers={}, status_code=403, request=None, url="")
            raise huggingface_hub.errors.GatedRepoError("403 gated", response=response)
        self.snapshots.append(
            {"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns, **kwargs}
        )
        folder = self.cache / repo_id.replace("/", "--") / "snapshots" / "abc123"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
        return str(folder)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(
        huggingface_hub, "HfApi", lambda: SimpleNamespace(model_info=fake.model_info)
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    return fake


def test_paper_downloads_every_hub_model_once(paper_config):
    downloads = md.planned_downloads(paper_config)
    got = {key: d.repo_id for d in downloads for key in d.config_keys}
    assert got == PAPER_REPOS
    assert len(downloads) == len(PAPER_REPOS)  # one entry per (repo, revision)
    assert {d.revision for d in downloads} == {"main"}  # not pinned yet: see docs/cluster.md
    gated = {d.repo_id for d in downloads if d.gated}
    assert gated == {r for r in PAPER_REPOS.values() if r.startswith("meta-llama/")}


def test_demo_and_standins_download_nothing():
    # GGUF from a PyPI package, stand-ins from a local path: no hub repo to fetch
    assert md.planned_downloads(load_config({"experiment": "demo"})) == []
    assert md.planned_downloads(load_config({"experiment": "paper_smoke"})) == []


def test_slots_sharing_a_repo_and_revision_download_once():
    cfg = {
        "models": {
            "a": {"hf_id": "org/m", "revision": "0123abc"},
            "b": {"hf_id": "org/m", "revision": "0123abc", "trust_remote_code": True},
            "c": {"hf_id": "org/m"},  # another revision: its own snapshot
            "local": {"hf_id": "org/m", "path": "/ckpt"},  # path wins over hf_id
        }
    }
    downloads = md.planned_downloads(cfg)
    assert [(d.repo_id, d.revision, d.config_keys, d.trust_remote_code) for d in downloads] == [
        ("org/m", "0123abc", ("models.a", "models.b"), True),
        ("org/m", "main", ("models.c",), False),
    ]


def test_a_bad_revision_names_the_config_key():
    with pytest.raises(md.DownloadError, match=r"config key 'models\.a\.revision'"):
        md.planned_downloads({"models": {"a": {"hf_id": "org/m", "revision": 3}}})


def test_fetch_requests_ids_revisions_and_patterns_for_the_paper(paper_config, hub, tmp_path):
    downloads = md.planned_downloads(paper_config)
    fetched = md.fetch_all(downloads)

    assert [(c[0], c[1]) for c in hub.info_calls] == [(d.repo_id, d.revision) for d in downloads]
    assert {c[2] for c in hub.info_calls} == {"hf_test_token"}
    by_repo = {s["repo_id"]: s for s in hub.snapshots}
    assert set(by_repo) == set(PAPER_REPOS.values())
    configs = list(md.CONFIG_PATTERNS)
    # Llama 3 / Qwen / BERT: safetensors only, never the consolidated .pth under original/
    llama3 = by_repo["meta-llama/Llama-3.3-70B-Instruct"]
    assert llama3["revision"] == "main"
    assert llama3["allow_patterns"] == [*configs, "*.safetensors"]
    assert llama3["ignore_patterns"] == ["original/*"]
    assert llama3["token"] == "hf_test_token"
    # Llama 2 has both formats: safetensors only (the .bin would double 140 GB)
    assert by_repo["meta-llama/Llama-2-70b-hf"]["allow_patterns"] == [*configs, "*.safetensors"]
    # a repo with only a .pt, whose own model code runs (trust_remote_code in its config)
    assert by_repo["FasterDecoding/medusa-1.0-zephyr-7b-beta"]["allow_patterns"] == [
        *configs,
        "*.pt",
        "*.py",
    ]
    assert fetched[0].commit == "abc123" and fetched[0].files == ["config.json"]

    manifest = tmp_path / "m.json"
    md.write_manifest(fetched, manifest)
    written = json.loads(manifest.read_text())
    assert written["software"] == md.software_versions()
    assert [m["repo_id"] for m in written["models"]] == [d.repo_id for d in downloads]


def test_remote_code_models_also_fetch_python_files(hub):
    download = md.ModelDownload("FasterDecoding/m", "v1", ("models.m",), trust_remote_code=True)
    md.fetch_all([download])
    assert hub.snapshots[0]["allow_patterns"] == [*md.CONFIG_PATTERNS, "*.pt", "*.py"]
    assert hub.snapshots[0]["revision"] == "v1"


def test_a_repo_without_loadable_weights_is_an_error():
    download = md.ModelDownload("org/m", "main", ("models.m",))
    with pytest.raises(md.DownloadError, match=r"models\.m\.hf_id.*no weights"):
        md.allow_patterns(["README.md", "original/consolidated.00.pth"], download)


def test_gated_llama_without_token_stops_before_any_request(paper_config, hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(md, "_token", lambda: None)  # and no token stored by `hf auth login`
    with pytest.raises(md.DownloadError) as err:
        md.fetch_all(md.planned_downloads(paper_config))
    message = str(err.value)
    assert "gated" in message and "HF_TOKEN" in message and "hf auth login" in message
    assert "https://huggingface.co/meta-llama/Llama-3.3-70B-Instruct" in message
    assert "models.llama3-70b-instruct" in message
    assert "Qwen" not in message  # only the gated repos are listed
    assert hub.info_calls == [] and hub.snapshots == []  # nothing was asked of the hub


def test_token_without_licence_names_the_licence_page(hub):
    hub.gated_without_access = ("meta-llama/Llama-3.1-8B",)
    download = md.ModelDownload("meta-llama/Llama-3.1-8B", "main", ("models.llama3-8b",))
    with pytest.raises(md.DownloadError, match="token has no access") as err:
        md.fetch_all([download])
    assert "https://huggingface.co/meta-llama/Llama-3.1-8B" in str(err.value)


def test_offline_mode_refuses_to_download(hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(md.DownloadError, match="HF_HUB_OFFLINE is set"):
        md.fetch_all([md.ModelDownload("Qwen/Qwen2.5-7B", "main", ("models.q",))])
    assert hub.snapshots == []


def test_software_versions_are_the_installed_ones():
    import torch
    import transformers

    versions = md.software_versions()
    assert versions["torch"] == torch.__version__
    assert versions["transformers"] == transformers.__version__


# --- the between-workflow cache key ----------------------------------------------------------

TRACES = "results/traces/goemotions/smollm2/json10/main_test_set/traces.jsonl.gz"


def trace_cache_key(workdir: Path, overrides: str = "") -> str:
    """Snakemake's provenance hash (the `--cache` key) of the demo's first trace job."""
    from snakemake.api import SnakemakeApi
    from snakemake.caching.hash import ProvenanceHashMap
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    config = {"experiment": "demo", **({"overrides": overrides} if overrides else {})}
    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(config=config),
            snakefile=ROOT / "Snakefile",
            workdir=workdir,
        )
        workflow_api.dag(dag_settings=DAGSettings(targets={TRACES}))
        workflow = workflow_api._workflow
        workflow._prepare_dag(
            forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True
        )
        workflow._build_dag()
        (job,) = [j for j in workflow.dag.jobs if TRACES in j.output]
        assert job.rule.cache, f"rule {job.rule.name} is no longer cached"
        return asyncio.run(ProvenanceHashMap().get_provenance_hash(job))


def test_cache_key_moves_with_revision_and_software(tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(ROOT / "data")
    base = trace_cache_key(tmp_path)
    assert trace_cache_key(tmp_path) == base  # deterministic
    assert trace_cache_key(tmp_path, "++models.smollm2.revision=0123abc") != base

    real = md.software_versions()
    for package in md.KEY_SOFTWARE:
        changed = {**real, package: "0.0.0-other"}
        monkeypatch.setattr(md, "software_versions", lambda changed=changed: changed)
        assert trace_cache_key(tmp_path) != base, f"{package} version is not in the key"


def test_cache_key_moves_with_engine_version(tmp_path, monkeypatch):
    """A finished trace made by an older engine is not restored from the cache (nor kept:
    the version is a param, so Snakemake's params trigger reruns it)."""
    from multilabel_llm.engine import version

    (tmp_path / "data").symlink_to(ROOT / "data")
    base = trace_cache_key(tmp_path)
    monkeypatch.setattr(version, "ENGINE_VERSION", version.ENGINE_VERSION + 1)
    assert trace_cache_key(tmp_path) != base
