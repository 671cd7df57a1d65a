"""How every tool ends on a mistake its user made: one line naming it, exit code 2, no traceback.

``--debug`` anywhere on a tool's command line shows the full traceback instead. Other errors (bugs,
torch internals) keep their traceback. Written here because argparse only covers the command line
itself, and mmengine's Runner lets every exception through.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

USAGE_ERROR = 2  # argparse's exit code for a bad command line
# Besides lape_mm's LaPEError: a missing file, or a file or folder in the way.
OS_USER_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's mistake raises: :class:`lape_mm.errors.LaPEError` (looked up only where already
    imported, so that tools which do not need lape_mm, such as the tiny data makers, do not import torch
    for this) and :data:`OS_USER_ERRORS`."""
    errors = sys.modules.get('lape_mm.errors')
    return OS_USER_ERRORS + ((errors.LaPEError,) if errors else ())


def run_main(main: Callable[[], object]) -> None:
    """Run a tool's ``main()``; a :func:`user_errors` exception becomes one line on stderr and exit 2."""
    debug = '--debug' in sys.argv[1:]
    if debug:
        sys.argv.remove('--debug')
    try:
        main()
    except Exception as err:  # noqa: BLE001  (re-raised unless it is a user error)
        if debug or not isinstance(err, user_errors()):
            raise
        message = ' '.join(str(err).split())  # key lists and mmengine messages span lines
        print(f'{os.path.basename(sys.argv[0])}: error: {message} (--debug shows the traceback)', file=sys.stderr)
        sys.exit(USAGE_ERROR)
