"""A real cognite-sdk client signed in to an emulator with client credentials (the demos and the tests)."""

from __future__ import annotations

from cognite.client import ClientConfig, CogniteClient
from cognite.client.credentials import OAuthClientCredentials

from emulator.server import CdfEmulator


def sdk_client(emu: CdfEmulator, client_id: str, client_secret: str, client_name: str = "test") -> CogniteClient:
    """A CogniteClient for ``emu``'s project that fetches its token from ``emu``'s token endpoint."""
    return CogniteClient(
        ClientConfig(
            client_name=client_name,
            project=emu.project,
            base_url=emu.base_url,
            credentials=OAuthClientCredentials(
                token_url=emu.token_url,
                client_id=client_id,
                client_secret=client_secret,
                scopes=[f"{emu.base_url}/.default"],
            ),
        )
    )
