"""The organisation's consent key kept in a Prefect Secret block.

With `SOPREEL_CONSENT_KEY=prefect-secret:NAME` the key lives on the Prefect server (encrypted
at rest, hidden in the UI) rather than in a file on each worker; every process that builds in
a cloned voice reads it from there. Prefect is imported only when the key is used.
"""

from __future__ import annotations

from stages.errors import ConsentError
from stages.ledger import register_key_source


class PrefectSecretKey:
    def __init__(self, name: str):
        self.name = name
        self.description = f"the Prefect Secret block '{name}'"

    def load(self) -> bytes | None:
        from prefect.blocks.system import Secret

        try:
            secret = Secret.load(self.name)
        except ValueError as error:
            if "Unable to find block document" in str(error):
                return None
            raise ConsentError(f"{self.description}: {error}") from None
        return str(secret.get()).encode()

    def create(self, pem: bytes) -> None:
        from prefect.blocks.system import Secret

        Secret(value=pem.decode()).save(self.name, overwrite=False)


register_key_source("prefect-secret", PrefectSecretKey)
