"""charrnn play: a page in the browser where the registry's models and the run's checkpoints write text."""
