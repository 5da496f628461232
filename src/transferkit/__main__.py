"""``python -m transferkit ...``: the same as the ``transferkit`` command."""

from transferkit.cli import main

if __name__ == "__main__":
    main()
