"""Every config override the docs show composes.

Scans README.md, docs/*.md and profiles/*/README.md for commands in code blocks and inline
code that pass ``--config ITEMS`` (Snakemake) or ``--experiment X --overrides "..."`` (the
project's CLIs), parses ``--config`` items with Snakemake's own parser (so a dotted key fails
as it would on the command line) and composes each through ``multilabel_llm.workflow.config
.load_config``, the loader rules/common.smk uses. Generic syntax examples with placeholders
(``experiment=NAME``, ``…``) are left out.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from pathlib import Path

import pytest
from snakemake.cli import parse_config

from multilabel_llm.workflow.config import SEARCH_PATH_ENV, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
# docs/extending.md's commands name what its recipes add (a method kind, a model config):
# they compose only once a recipe is applied, which tests/docs/test_extending.py does
RECIPES = ROOT / "docs" / "extending.md"
DOCS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "profiles").glob("*/README.md")]
)
DOCS.remove(RECIPES)
FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"`([^`\n]+)`")
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
SHELL_OPERATORS = {"|", ">", ">>", "&&", "||", ";", "2>"}
# a generic example rather than a runnable one: `experiment=NAME`, `key=value …`
PLACEHOLDER = re.compile(r"…|\.\.\.|=[A-Z][A-Z_]*\b|\$\(")


def snippets(text: str):
    """(line number, command) of every shell line in fenced blocks and every inline code span
    that passes config; backslash continuations are joined."""
    fence = None
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line.strip())
        if match:
            fence = None if fence is not None else match.group(1)
            continue
        if fence is not None:
            if fence not in SHELL_FENCES:
                continue
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending = ""
        else:
            for span in INLINE.findall(line):
                if "--config" in span or "--overrides" in span:
                    yield number, span


def config_items(command: str) -> dict | None:
    """The load_config input a command line passes, or None if it passes no config."""
    words = shlex.split(command, comments=True)
    if "--config" in words:
        items = []
        for word in words[words.index("--config") + 1 :]:
            # Snakemake's --config takes words up to the next option (or the shell's pipe)
            if word.startswith("-") or word in SHELL_OPERATORS:
                break
            items.append(word)
        return parse_config(items)  # raises as Snakemake would, e.g. on a dotted key
    if "--overrides" in words or "--experiment" in words:
        got = {}
        for flag, key in (("--experiment", "experiment"), ("--overrides", "overrides")):
            if flag in words and words.index(flag) + 1 < len(words):
                got[key] = words[words.index(flag) + 1]
        return got
    return None


def documented_configs():
    cases = []
    for path in DOCS:
        for line, command in snippets(path.read_text(encoding="utf-8")):
            try:  # shell comments do not count: `make download  # = snakemake --config ...`
                words = shlex.split(command, comments=True)
            except ValueError:  # prose in an inline span, not a command line
                continue
            if "--config" not in words and "--overrides" not in words:
                continue
            if PLACEHOLDER.search(command):
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            cases.append(pytest.param(command, id=where))
    return cases


CASES = documented_configs()


def test_the_scan_finds_the_documented_overrides():
    commands = " ".join(case.values[0] for case in CASES)
    assert len(CASES) >= 10
    # the override that motivated the size-class rename, and a nested mapping
    assert "resources.size_classes.b70.gpu=2" in commands
    assert "models={smollm2: {dtype: bfloat16}}" in commands


def search_path_of(command: str) -> str | None:
    """The config trees a command adds: ``MULTILABEL_LLM_CONFIG_PATH=tests/config snakemake …``
    (the test experiments); None when it sets none."""
    for word in shlex.split(command, comments=True):
        if word.startswith(f"{SEARCH_PATH_ENV}="):
            return word.split("=", 1)[1]
    return None


@functools.cache
def compose_once(items_json: str, search_path: str | None) -> None:
    """Compose each distinct config once: many commands repeat `experiment=paper`."""
    with pytest.MonkeyPatch.context() as env:
        # only what the command itself sets: a documented test experiment must name the tree
        env.delenv(SEARCH_PATH_ENV, raising=False)
        if search_path is not None:
            env.setenv(SEARCH_PATH_ENV, search_path)
        load_config(json.loads(items_json))


@pytest.mark.parametrize("command", CASES)
def test_documented_override_composes(command):
    items = config_items(command)
    assert items is not None, f"no config found in {command!r}"
    try:
        compose_once(json.dumps(items, sort_keys=True), search_path_of(command))
    except ConfigError as err:
        pytest.fail(f"documented command {command!r} does not compose:\n{err}")


def test_the_old_documented_form_would_have_failed():
    # what profiles/slurm/README.md showed before the rename, and a dotted --config key
    old = "Edit it, or override it for one run: `--config 'resources={size_classes: {70b: {gpu: 2}}}'`."
    ((_, command),) = list(snippets(old))
    with pytest.raises(ConfigError, match="renamed to 'b70'"):
        load_config(config_items(command))
    with pytest.raises(ValueError, match="valid identifier"):
        config_items("snakemake --config resources.size_classes.b70.gpu=2")


def test_fenced_blocks_join_continuations_and_skip_yaml():
    text = (
        "```bash\nsnakemake -n --config experiment=demo \\\n"
        '    overrides="models.smollm2.dtype=bfloat16"  # a comment\n```\n'
        "```yaml\nkey: --config experiment=nope\n```\n"
    )
    ((line, command),) = list(snippets(text))
    assert line == 2
    assert config_items(command) == {
        "experiment": "demo",
        "overrides": "models.smollm2.dtype=bfloat16",
    }


def test_a_documented_test_experiment_must_name_its_tree():
    command = "snakemake -n --config experiment=tiny"
    with pytest.raises(ConfigError, match=f"{SEARCH_PATH_ENV}=tests/config"):
        compose_once.__wrapped__(json.dumps(config_items(command)), search_path_of(command))
    named = f"{SEARCH_PATH_ENV}=tests/config {command}"
    compose_once.__wrapped__(json.dumps(config_items(named)), search_path_of(named))
