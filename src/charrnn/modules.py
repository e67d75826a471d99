"""The package's own source files: which charrnn modules a module needs, and their checksums.

Training resumes only under the same code (the closure of train.py), and the train stage packages
into each MLflow model only the modules the served model needs (the closure of served_model.py).
"""

import ast
import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent


def closure(*names):
    """File names of the modules `names` (e.g. 'train') and of every charrnn module they import,
    directly or through others, anywhere in their code, with the package's __init__.py; sorted."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += imported_by(PACKAGE_DIR / f"{name}.py")
    return sorted(f"{name}.py" for name in found | {"__init__"})


def checksums(files):
    """{file name: the first 16 hex digits of its sha256} for package files."""
    return {name: hashlib.sha256((PACKAGE_DIR / name).read_bytes()).hexdigest()[:16] for name in files}


def imported_by(path):
    """The charrnn modules that the Python file `path` imports (`from charrnn import x`, `from charrnn.x import`)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "charrnn":
            names += [alias.name for alias in node.names if (PACKAGE_DIR / f"{alias.name}.py").is_file()]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("charrnn."):
            names.append(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names += [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("charrnn.")]
    return names
