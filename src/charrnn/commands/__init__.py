"""The `charrnn` command and what only its subcommands run: compare, repro-check, report."""
