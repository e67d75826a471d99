"""The package's own source files: which charrnn modules a module needs, and their checksums.

Training resumes only under the same code (the closure of charrnn.training.loop), the served model
carries only the modules it needs (the closure of charrnn.serving.served_model), and the tests check
dvc.yaml's code deps and the layout's rule against these closures.
"""

import ast
import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
PACKAGE = PACKAGE_DIR.name


def module_file(name):
    """The file of the dotted module `name` (e.g. 'charrnn.core.model'), or None if there is none."""
    path = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for candidate in (path / "__init__.py", path.parent / f"{path.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def closure(*names):
    """Files (relative to the package folder, e.g. 'core/model.py') of the modules `names` (dotted)
    and of every charrnn module they import, directly or through others, anywhere in their code, with
    the __init__.py of every package on the way; sorted."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # a module's packages run their __init__.py first
            prefix = ".".join(parts[:depth])
            if prefix not in found and module_file(prefix) is not None:
                found.add(prefix)
                todo += imported_by(module_file(prefix))
    return sorted(str(module_file(name).relative_to(PACKAGE_DIR)) for name in found)


def checksums(files):
    """{file: the first 16 hex digits of its sha256} for package files (as closure() names them)."""
    return {name: hashlib.sha256((PACKAGE_DIR / name).read_bytes()).hexdigest()[:16] for name in files}


def imported_by(path):
    """The dotted names of the charrnn modules that the Python file `path` imports (`import charrnn.x`,
    `from charrnn.x import y`, `from charrnn.x import module`)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE and not node.level:
            names.append(node.module)
            names += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if module_file(f"{node.module}.{alias.name}") is not None
            ]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    return names
