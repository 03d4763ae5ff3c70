"""The population of a load run, shared by the seeding code and the locust user classes: how
many institutions of each kind, which providers are hot, the providers' signing keys, the
service dates (China Standard Time) and the amounts in fen a realistic claim, voucher or loan
has. Nothing here talks to the server."""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import hashlib
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.uscc import make_uscc

CST = dt.timezone(dt.timedelta(hours=8))  # API_CONTRACT.md §2: dates are days in China
SERVICE_CATEGORIES = ("testing", "consulting", "design", "technology-transfer", "rnd-outsourcing")
HOT_SHARE_BP = 8000  # the hot providers get this share of the claims


def today_cst() -> dt.date:
    """'Today' as the ledger counts it: between 16:00 and 24:00 UTC it is already tomorrow."""
    return dt.datetime.now(CST).date()


def enterprise_uscc(n: int) -> str:
    return make_uscc(f"91350100E{n:08d}")


def provider_uscc(n: int) -> str:
    return make_uscc(f"91110000P{n:08d}")


def bank_uscc(n: int) -> str:
    return make_uscc(f"91370000B{n:08d}")


def bank_account(uscc: str) -> str:
    """A stable, distinct account number per institution (what payouts pay into)."""
    return "6222" + str(int(hashlib.sha256(uscc.encode()).hexdigest(), 16))[:15]


@dataclass(frozen=True)
class Sizes:
    """How big the seeded ledger is. The default is issue 15's: 10,000 institutions (a fifth
    of them providers, one in 500 a bank) and 100,000 vouchers."""

    institutions: int = 10_000
    vouchers: int = 100_000
    hot_providers: int = 5
    redemptions: int = 2_000  # before the scenarios: payables to pay out, claims to trace
    loans_per_bank: int = 6  # each with one claim filed; half of them approved

    @property
    def banks(self) -> int:
        return max(2, self.institutions // 500)

    @property
    def providers(self) -> int:
        return max(self.hot_providers + 1, self.institutions // 5)

    @property
    def enterprises(self) -> int:
        count = self.institutions - self.banks - self.providers
        assert count > 0, "too few institutions for the banks and providers"
        return count


def signing_key(secret: str, uscc: str) -> Ed25519PrivateKey:
    """A provider's Ed25519 key, derived from the run's secret so the seed file need not hold
    2,000 private keys: the same secret and provider give the same key."""
    digest = hashlib.sha256(f"{secret}:{uscc}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(digest)


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def canonical(body: dict[str, Any]) -> bytes:
    """What a provider signs (API_CONTRACT.md §2, canonical JSON)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed(key: Ed25519PrivateKey, body: dict[str, Any]) -> dict[str, Any]:
    """The body with its ``signature``: base64 Ed25519 over the canonical JSON of the rest."""
    return {**body, "signature": base64.b64encode(key.sign(canonical(body))).decode()}


class ProviderPicker:
    """Chooses the provider of the next claim: the hot few get ``HOT_SHARE_BP`` of the claims
    between them, the others share the rest evenly."""

    def __init__(self, hot: int, total: int, rng: random.Random) -> None:
        assert 0 < hot < total
        self.hot, self.total, self.rng = hot, total, rng
        # Cumulative weights in bp-of-a-bp, integers: a hot provider weighs more than the rest.
        weights = [HOT_SHARE_BP * (total - hot)] * hot + [(10_000 - HOT_SHARE_BP) * hot] * (
            total - hot
        )
        self.cumulative = list(itertools.accumulate(weights))

    def pick(self) -> int:
        """The index of a provider, 0 .. total - 1 (the first ``hot`` are the hot ones)."""
        return bisect.bisect_right(self.cumulative, self.rng.randrange(self.cumulative[-1]))


def face_value_fen(rng: random.Random) -> int:
    """A voucher's face value: 5,000 to 50,000 yuan in hundreds of yuan, most of them small
    (the smaller of two uniform draws)."""
    return min(rng.randrange(50, 501), rng.randrange(50, 501)) * 10_000


def contract_amount_fen(rng: random.Random) -> int:
    """A service contract: 1,000 to 30,000 yuan to the fen, most of them small; the voucher's
    subsidy covers 90% of it, so a voucher lasts about two claims."""
    return min(rng.randrange(100_000, 3_000_001), rng.randrange(100_000, 3_000_001))


def loan_principal_fen(rng: random.Random) -> int:
    """A covered technology loan: 1 to 10 million yuan, in thousands of yuan."""
    return rng.randrange(1_000, 10_001) * 100_000


def fresh_reference(prefix: str, n: int, rng: random.Random) -> str:
    """A contract, invoice or loan number no other run or process repeats (API KEY pattern)."""
    return f"{prefix}-{n}-{rng.getrandbits(48):012x}"
