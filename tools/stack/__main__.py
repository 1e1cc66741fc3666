"""`python3 tools/stack COMMAND`: the local stack's command line, with a bare python3
(standard library only) before the virtualenv exists."""

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a directory (`python3 tools/stack`): sys.path[0] is this package's own folder,
    # where its modules would shadow others; import it as the package `stack` instead.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

from stack.cli import main

sys.exit(main())
