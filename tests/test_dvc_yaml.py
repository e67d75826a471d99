"""dvc.yaml tells the truth: each stage reads only what it declares (deps, or its own persisted outs),
loads only the package modules it declares, reads exactly the params it declares, and writes only its
outs, each atomically. A stage using an undeclared file, module or param would not be rerun when it
changes; one declaring what it never uses would be rerun for nothing."""

import json

import yaml

from charrnn import modules, params

from helpers import ROOT

# Code and config, which DVC tracks through the stage's declared code deps and params.
NOT_DATA = ("src/", "stages/", "params.yaml", "mlruns/", ".dvc/", ".git/", "dvc.yaml", "dvc.lock")


def declared(stage):
    """(deps, outs) of a stage; a folder of the package among the deps stands for its Python files."""

    def paths(entries):
        return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]

    def files(dep):
        if dep.startswith("src/") and (ROOT / dep).is_dir():
            return sorted(str(path.relative_to(ROOT)) for path in (ROOT / dep).glob("*.py"))
        return [dep]

    deps = [path for dep in paths(stage.get("deps")) for path in files(dep)]
    outs = paths(stage.get("outs")) + paths(stage.get("metrics")) + paths(stage.get("plots"))
    return deps, outs


def within(path, targets):
    return any(path == target or path.startswith(target.rstrip("/") + "/") for target in targets)


def test_stages_read_and_write_only_what_dvc_yaml_declares(built):
    audit = built.audit  # the shared build's first `dvc repro` ran with the audit hook
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert sorted(path.stem for path in audit.glob("*.json")) == sorted(stages)
    root = str(built.root.resolve()) + "/"
    for name, stage in stages.items():
        deps, outs = declared(stage)
        log = json.loads((audit / f"{name}.json").read_text())
        assert log["modules"] and all(p.startswith(root) for p in log["modules"]), f"{name} ran another src/"
        local = lambda paths: {p[len(root) :] for p in paths if p.startswith(root) and not p.startswith(str(audit))}  # noqa: E731
        data_reads = {p for p in local(log["reads"]) if not p.startswith(NOT_DATA)}
        writes = {p for p in local(log["writes"]) if not p.startswith("mlruns/") and "/." not in "/" + p}
        assert {p for p in data_reads if not within(p, deps + outs)} == set(), name
        # every package module the stage loaded, and every package file it read (the register stage
        # copies the served model's modules), is a dep; and the deps are just those the stage imports
        loaded = local(log["modules"]) | {
            p for p in local(log["reads"]) if p.startswith("src/charrnn/") and p.endswith(".py")
        }
        assert loaded - set(deps) == set(), f"stage {name} uses package files dvc.yaml does not declare"
        script = ROOT / "stages" / f"{name}.py"
        imported = {f"src/charrnn/{file}" for file in modules.closure(*modules.imported_by(script))}
        assert len(deps) == len(set(deps)), f"stage {name} declares a module twice (alone and in its folder)"
        assert {p for p in deps if p.startswith("src/")} == imported | loaded, f"stage {name}: deps it does not use"
        assert {p for p in writes if not within(p, outs)} == set(), name
        assert writes, f"stage {name} wrote nothing"
        # every output arrives by a rename from a hidden temp file beside it, never written in place
        assert writes - local(log["renamed"]) == set(), name


def test_stages_read_exactly_the_params_dvc_yaml_declares(built):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        declared = set(stage.get("params") or [])
        read = set(json.loads((built.audit / f"{name}.json").read_text())["params"])  # the audit hook's record
        keys = {
            entry: {key for key in params.SCHEMA if key == entry or key.startswith(f"{entry}.")} for entry in declared
        }  # a section stands for its keys
        assert all(keys.values()), f"stage {name} declares params that params.yaml does not have"
        assert read - set().union(*keys.values()) == set(), f"stage {name} reads params dvc.yaml does not declare"
        assert {entry for entry, covered in keys.items() if not covered <= read} == set(), (
            f"stage {name} declares params it never reads"
        )
