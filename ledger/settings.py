"""Configuration read once from the environment into one typed object (STYLE.md habit 12).

``DATABASE_URL`` is ours; it is parsed once into the environment keys eventsourcing reads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DATABASE_URL = "sqlite:///var/ledger.sqlite"
PROJECTOR_MODES = ("embedded", "external")
DEFAULT_SIGNING_KEY_FILE = "var/ledger-signing-key.pem"


def _int(environ: Mapping[str, str], name: str, default: int, lowest: int, highest: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not lowest <= int(raw) <= highest:
        raise ValueError(f"{name} must be a whole number from {lowest} to {highest}")
    return int(raw)


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = environ.get(name) or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    admin_token: str | None = None
    # embedded: the API process runs the projector in a thread; external: another process does
    # (``voucher-ledger serve`` starts one for its workers, or ``voucher-ledger project``).
    projector: str = "embedded"
    signing_key_file: str | None = None  # LEDGER_SIGNING_KEY_FILE; see signing_key_path
    checkpoint_every: int = 1000  # LEDGER_CHECKPOINT_EVERY: events per signed checkpoint
    checkpoint_interval_s: int = 10  # LEDGER_CHECKPOINT_INTERVAL_S: or this often, if newer
    # The treasury account payouts are paid from, as a pain.001 payment file names its debtor.
    treasury_name: str = "Treasury"  # LEDGER_TREASURY_NAME
    treasury_account: str = "TREASURY-ACCOUNT"  # LEDGER_TREASURY_ACCOUNT (IBAN or account no.)
    treasury_agent: str = "000000000000"  # LEDGER_TREASURY_AGENT (the bank's BIC or CNAPS code)
    extra_env: dict[str, str] = field(default_factory=dict)
    # DATABASE_REPLICA_URL: a hot standby of DATABASE_URL (PostgreSQL's streaming replication)
    # that the API's view reads, audit queries, verify and reports go to; see ``replica``.
    replica_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        return cls(
            database_url=environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            admin_token=environ.get("LEDGER_ADMIN_TOKEN") or None,
            projector=_choice(environ, "LEDGER_PROJECTOR", PROJECTOR_MODES),
            signing_key_file=environ.get("LEDGER_SIGNING_KEY_FILE") or None,
            checkpoint_every=_int(environ, "LEDGER_CHECKPOINT_EVERY", 1000, 1, 1 << 20),
            checkpoint_interval_s=_int(environ, "LEDGER_CHECKPOINT_INTERVAL_S", 10, 1, 86_400),
            treasury_name=environ.get("LEDGER_TREASURY_NAME") or cls.treasury_name,
            treasury_account=environ.get("LEDGER_TREASURY_ACCOUNT") or cls.treasury_account,
            treasury_agent=environ.get("LEDGER_TREASURY_AGENT") or cls.treasury_agent,
            replica_url=environ.get("DATABASE_REPLICA_URL") or None,
        )

    def replica(self) -> Settings | None:
        """The settings that read the standby, or None without DATABASE_REPLICA_URL. Nothing
        is created there (a standby is read-only); the primary's ``?schema=`` holds unless the
        replica's URL names one."""
        if self.replica_url is None:
            return None
        replica = Settings(database_url=self.replica_url)
        if self.backend != "postgres" or replica.backend != "postgres":
            raise ValueError("DATABASE_REPLICA_URL is a PostgreSQL standby of DATABASE_URL")
        url = self.replica_url
        schema = persistence_env(self.database_url)["POSTGRES_SCHEMA"]
        if schema and not persistence_env(url)["POSTGRES_SCHEMA"]:
            url += ("&" if urlsplit(url).query else "?") + f"schema={schema}"
        return replace(
            self,
            database_url=url,
            replica_url=None,
            extra_env={**self.extra_env, "CREATE_TABLE": "false"},
        )

    @property
    def read_only(self) -> bool:
        """A standby's settings: its tables are the primary's, replicated."""
        return self.extra_env.get("CREATE_TABLE") == "false"

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgres`` or ``memory``."""
        scheme = urlsplit(self.database_url).scheme
        if scheme == "sqlite":
            return "sqlite"
        if scheme in ("postgres", "postgresql"):
            return "postgres"
        if scheme == "memory":
            return "memory"
        raise ValueError(f"DATABASE_URL scheme {scheme!r} is not sqlite, postgresql or memory")

    @property
    def signing_key_path(self) -> str | None:
        """Where the audit checkpoints' Ed25519 key lives: LEDGER_SIGNING_KEY_FILE, else beside
        a SQLite ledger's file, else var/ (PostgreSQL); None for the in-memory ledger (a key for
        the process only)."""
        if self.signing_key_file:
            return self.signing_key_file
        if self.backend == "memory":
            return None
        if self.backend == "sqlite":
            path = persistence_env(self.database_url)["SQLITE_DBNAME"]
            if path != ":memory:":
                return f"{path}.signing-key.pem"
            return None
        return DEFAULT_SIGNING_KEY_FILE

    @property
    def demo_secret_path(self) -> str | None:
        """Where ``voucher-ledger demo`` keeps the secret its principals' tokens derive from:
        beside the signing key (None for the in-memory ledger: a secret for the process)."""
        key_path = self.signing_key_path
        if key_path is None:
            return None
        for suffix in (".signing-key.pem", "-signing-key.pem"):
            if key_path.endswith(suffix):
                return key_path[: -len(suffix)] + suffix[0] + "demo-secret"
        return f"{key_path}.demo-secret"

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment for ``eventsourcing.Application`` that this URL selects."""
        env = persistence_env(self.database_url)
        env.update(self.extra_env)
        return env


def persistence_env(database_url: str) -> dict[str, str]:
    parts = urlsplit(database_url)
    if parts.scheme == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if parts.scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path (as SQLAlchemy spells them).
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError("DATABASE_URL sqlite:/// needs a file path")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    if parts.scheme in ("postgres", "postgresql"):
        # ?schema=NAME keeps several ledgers (tests, benchmarks) apart in one database.
        schema = parse_qs(parts.query).get("schema", [""])[0]
        return {
            "POSTGRES_SCHEMA": schema,
            # eventsourcing's factory, with a pool that heals within a second of the database
            # coming back after an outage (ledger/adapters/postgres.py: ReconnectingPool).
            "PERSISTENCE_MODULE": "ledger.adapters.postgres:PostgresFactory",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": "10",
            "POSTGRES_MAX_OVERFLOW": "10",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_CONNECT_TIMEOUT": "10",  # how long a caller may wait for a pooled one
            # Check each pooled connection as it is handed out: after a restart the pool holds
            # connections that died with the server (LIBRARY_NOTES.md, "After a database
            # restart"). The views and the audit chain open their stores with this env too.
            "POSTGRES_PRE_PING": "y",
            # One round trip per insert, with the table lock kept (ledger/adapters/postgres.py).
            "APPLICATION_RECORDER_TOPIC": "ledger.adapters.postgres:LockingFunctionRecorder",
        }
    raise ValueError(f"DATABASE_URL scheme {parts.scheme!r} is not sqlite, postgresql or memory")
