"""The ``infinity-data`` subcommands that live outside cli.py; each module imports its heavy
dependencies only when its command runs, so ``infinity-data --help`` stays fast."""
