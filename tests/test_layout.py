"""The layout's rule, by the imports: each concern of src/charrnn/ imports only what it stands on, so an
edit of generation, serving, tracking or a command never reruns training (dvc.yaml's deps follow the
imports: tests/test_dvc_yaml.py)."""

import ast

import pytest

from charrnn import modules

from helpers import ROOT

SHARED = {
    "__init__.py",
    "errors.py",
    "atomic.py",
    "params.py",
    "modules.py",
    "memory.py",
    "progress.py",
    "dvc_exp.py",
    "servers.py",
}
# what each subpackage may import besides the shared modules
MAY_IMPORT = {
    "data": {"data"},
    "core": {"data", "core"},
    "training": {"data", "core", "training"},
    "generation": {"data", "core", "generation"},
    "serving": {"data", "core", "generation", "serving"},
    "tracking": {"data", "core", "generation", "serving", "tracking"},
    "play": {"data", "core", "generation", "serving", "tracking", "play"},
    "commands": {"data", "core", "training", "generation", "serving", "tracking", "play", "commands"},
}


def concern(file):
    """'core' for core/model.py; the file name for a top-level module."""
    return file.split("/")[0]


def package_modules():
    return sorted(
        str(path.relative_to(modules.PACKAGE_DIR))
        for path in modules.PACKAGE_DIR.rglob("*.py")
        if "__pycache__" not in path.parts
    )


def dotted(file):
    parts = file.removesuffix(".py").split("/")
    return ".".join(["charrnn", *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))


@pytest.mark.parametrize("file", [f for f in package_modules() if "/" in f])
def test_each_concern_imports_only_what_it_stands_on(file):
    allowed = MAY_IMPORT[concern(file)] | SHARED
    used = {concern(name) for name in modules.closure(dotted(file))}
    assert used - allowed == set(), f"{file} imports {sorted(used - allowed)}"


def test_the_train_stage_runs_no_generation_serving_registry_or_command_code():
    used = modules.closure(*modules.imported_by(ROOT / "stages" / "train.py"))
    assert {concern(name) for name in used} - SHARED == {"data", "core", "training", "tracking"}
    assert {name for name in used if concern(name) == "tracking"} == {
        "tracking/__init__.py",
        "tracking/store.py",
        "tracking/runs.py",
        "tracking/live.py",
    }  # live curves only
    assert "data/corpus.py" not in used  # a new corpus in the list retrains nothing


def test_the_shared_modules_stand_alone():
    # params is read by every stage, and generation's rules by the served model's request rules: they
    # import no corpus list, no torch
    for file in (
        "params.py",
        "errors.py",
        "atomic.py",
        "memory.py",
        "progress.py",
        "dvc_exp.py",
        "servers.py",
        "generation/rules.py",
    ):
        assert set(modules.closure(dotted(file))) - {"generation/__init__.py", "generation/rules.py"} <= SHARED, file
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse((modules.PACKAGE_DIR / file).read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert "torch" not in imported, file
    assert modules.closure("charrnn.data.vocab") == [
        "__init__.py",
        "atomic.py",
        "data/__init__.py",
        "data/vocab.py",
        "errors.py",
    ]


def test_the_closure_follows_every_form_of_import(tmp_path):
    source = tmp_path / "user.py"
    source.write_text(
        "import charrnn.core.model\nfrom charrnn import params\nfrom charrnn.data import vocab\n"
        "from charrnn.generation.sample import generate\n"
    )
    assert set(modules.imported_by(source)) == {
        "charrnn.core.model",
        "charrnn",
        "charrnn.params",
        "charrnn.data",
        "charrnn.data.vocab",
        "charrnn.generation.sample",
    }
    closure = modules.closure(*modules.imported_by(source))
    assert {
        "core/__init__.py",
        "core/model.py",
        "generation/__init__.py",
        "generation/sample.py",
        "generation/steppers.py",
        "data/vocab.py",
    } <= set(closure)
