"""The ``leukoscan`` command (``python -m leukoscan`` too): the command line of ``leukoscan.pipeline``, with a
Ctrl-C while it is still importing its libraries (the first second or two) answered with one line, not a
traceback."""

import sys


def main() -> None:
    try:
        from leukoscan.pipeline import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: stopped before it started\n")
        sys.exit(130)
    app()


if __name__ == "__main__":
    main()
