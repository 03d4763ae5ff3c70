"""The events' JSON, written by msgspec: the same bytes as eventsourcing's ``JSONTranscoder``
at a fraction of the cost.

The library's transcoder runs the standard library's encoder with a Python ``default`` hook for
every UUID and datetime, and serialising a redemption's five events took as long as deciding it.
msgspec encodes UUIDs and datetimes natively, in its own format, so this transcoder first tags
them as the library does (``{"_type_": "uuid_hex", "_data_": ...}``) and lets msgspec write the
rest. Anything unusual (a float, a subclass, a type without a transcoding, a key that is not a
string) goes to the library's encoder instead, which writes it or raises as it always has.
Decoding is the library's. ``tests/test_transcoder.py`` holds the two encoders to the same
bytes."""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.persistence import JSONTranscoder


class _Unusual(Exception):
    """Raised inside ``_tagged`` for a value the library's encoder should handle."""


class FastJSONTranscoder(JSONTranscoder):
    def __init__(self) -> None:
        super().__init__()
        self._fast = msgspec.json.Encoder()

    def encode(self, obj: Any) -> bytes:
        try:
            return self._fast.encode(self._tagged(obj))
        except Exception:  # the library's encoder writes it, or says why not
            return super().encode(obj)

    def _tagged(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is str or kind is int or kind is bool or obj is None:
            return obj
        if kind is dict:
            out = {}
            for key, value in obj.items():
                if type(key) is not str:
                    raise _Unusual
                vkind = type(value)
                if vkind is str or vkind is int or vkind is bool or value is None:
                    out[key] = value
                else:
                    out[key] = self._tagged(value)
            return out
        if kind is list or kind is tuple:
            return [self._tagged(item) for item in obj]
        transcoding = self.types.get(kind)
        if transcoding is None:
            raise _Unusual
        return {"_type_": transcoding.name, "_data_": self._tagged(transcoding.encode(obj))}
