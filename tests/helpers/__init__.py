"""What the tests share besides fixtures (those are in conftest.py): the project's root, configs,
running stages and commands, projects in scratch folders, servers on 127.0.0.1 and an interrupted
training."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
