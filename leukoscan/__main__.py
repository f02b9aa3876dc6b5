"""The ``leukoscan`` command (``python -m leukoscan`` too): the command line of ``leukoscan.pipeline``, with a
Ctrl-C while it is still importing its libraries (the first second or two) answered with one line, not a
traceback, and one after the command has finished (while the interpreter shuts its libraries down, a second or
two) ignored: a finished run keeps its exit code."""

import signal
import sys


def main() -> None:
    try:
        from leukoscan.pipeline import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: stopped before it started\n")
        sys.exit(130)
    try:
        app()
    except SystemExit:  # the command has ended and said how (an interrupted one: 130 already)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise


if __name__ == "__main__":
    main()
