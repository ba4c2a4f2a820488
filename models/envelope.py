"""What every broker message has: a ``type`` tag, the schema version ``v``, and its JSON."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    v: int = SCHEMA_VERSION

    def dumps(self) -> bytes:
        return self.model_dump_json().encode()
