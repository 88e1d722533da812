"""``python -m runjournal``: the command line."""

from runjournal.cli.main import main

main()
