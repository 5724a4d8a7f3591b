"""`python -m decodekit ...` runs the `decodekit` command."""

from decodekit.cli import main

main()
