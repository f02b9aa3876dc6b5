"""The ``leukoscan`` command (``python -m leukoscan`` too): the command line of ``leukoscan.pipeline``, with a
Ctrl-C while it is still importing its libraries (the first second or two) answered with one line, not a
traceback; its help 120 columns wide when piped; and a Ctrl-C after the command has ended (while the
interpreter shuts its libraries down, a second or two) ending the process at once with the command's own exit
code: a finished run keeps it."""

import os
import signal
import sys


def main() -> None:
    if not sys.stdout.isatty() and not {"COLUMNS", "TERMINAL_WIDTH"} & set(os.environ):
        # help piped to a pager or a file: typer draws it 120 columns wide, not 80 (long option names were cut)
        os.environ["TERMINAL_WIDTH"] = "120"
    try:
        from leukoscan.pipeline import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: stopped before it started\n")
        sys.exit(130)
    try:
        app()
    except SystemExit as ended:  # the command has ended and said how (an interrupted one: 130 already)
        code = ended.code if isinstance(ended.code, int) else int(ended.code is not None)

        def end_now(*_) -> None:  # its outputs are written: nothing of the shutdown is worth waiting for
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

        signal.signal(signal.SIGINT, end_now)
        raise


if __name__ == "__main__":
    main()
