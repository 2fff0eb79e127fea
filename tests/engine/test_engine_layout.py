"""The engine's generic modules reach the Hugging Face and vLLM engines only through the
backend registry (engine/backend.py), so a new backend is one module plus one entry."""

import grimp

GENERIC = ("backend", "breakdown", "identity", "jobs", "label_tokens", "loading")
GENERIC += ("model_spec", "run", "service", "tracing", "version")


def test_generic_engine_modules_import_no_backend_package():
    graph = grimp.build_graph("multilabel_llm")
    for name in GENERIC:
        imported = graph.find_modules_directly_imported_by(f"multilabel_llm.engine.{name}")
        backends = sorted(
            m
            for m in imported
            if m.startswith(("multilabel_llm.engine.hf", "multilabel_llm.engine.vllm"))
        )
        assert not backends, f"engine/{name}.py imports {backends}"
    assert not graph.chain_exists(
        importer="multilabel_llm.engine.run", imported="multilabel_llm.engine.jobs"
    )
