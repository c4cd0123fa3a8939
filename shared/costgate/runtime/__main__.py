"""`python -m costgate.runtime`: the streaming runtime loop, as ApiFunction's exec wrapper starts it."""

import sys

from costgate.runtime.loop import main

if __name__ == "__main__":
    sys.exit(main())
