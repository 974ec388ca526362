"""``python -m emulator``: the same as ``workflow-retry emulator`` (:mod:`emulator.local`)."""

from __future__ import annotations

from emulator.local import main

if __name__ == "__main__":
    raise SystemExit(main())
