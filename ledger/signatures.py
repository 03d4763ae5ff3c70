"""Signed claims: a provider that registered an Ed25519 public key signs each redemption, so the
claim is non-repudiable (API_CONTRACT.md §2, canonical JSON)."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ledger.errors import InvalidSignature

ED25519_SIGNATURE_LEN = 64


@lru_cache(maxsize=4096)
def _public_key(pem: str) -> Ed25519PublicKey:
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)  # checked when the institution registered it
    return key


def verify(public_key_pem: str, signature_b64: str | None, payload: bytes | None) -> None:
    """Raise InvalidSignature unless ``signature_b64`` is a valid Ed25519 signature by the key
    over ``payload`` (the canonical JSON of the request without its signature)."""
    if not signature_b64:
        raise InvalidSignature("this provider registered a public key: the claim must be signed")
    if payload is None:
        raise InvalidSignature("no signed payload to verify the signature against")
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("signature is not base64") from None
    if len(raw) != ED25519_SIGNATURE_LEN:
        raise InvalidSignature("signature is not an Ed25519 signature (64 bytes)")
    try:
        _public_key(public_key_pem).verify(raw, payload)
    except CryptoInvalidSignature:
        raise InvalidSignature("signature does not verify with the provider's key") from None
