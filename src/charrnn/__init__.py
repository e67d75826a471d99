"""charrnn: character-level recurrent language models as a reproducible pipeline."""

__version__ = "0.1.0"


def project_root():
    """The repository root: DVC_ROOT under DVC (queued experiments run in temp copies), else the cwd."""
    import os
    from pathlib import Path

    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
