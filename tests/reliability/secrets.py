"""Every secret the reliability suite knows of: what the secret scans look for."""

from __future__ import annotations

from emulator import CdfEmulator
from tests import conftest as suite


def known_secrets(emu: CdfEmulator) -> list[str]:
    """Client secrets and webhook secrets made by the tests, and every token and nonce the emulator issued."""
    return [*suite._known_secrets, *emu.issued_tokens, *emu.issued_nonces]
