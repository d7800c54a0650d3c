"""Settings read from the environment (prefix ``JEWELRY_``)."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.security import MAX_KEY_LENGTH

# Names prometheus_client's directory for multiprocess mode, which `serve` turns on.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JEWELRY_", extra="ignore")

    # Where the embedded database and the generated admin key file live.
    # data/ in the directory the service is started from (the project's, with `make run`), so
    # that an installed package never writes inside site-packages.
    DATA_DIR: Path = Field(default_factory=lambda: Path("data").resolve())
    # Empty means the SQLite file DATA_DIR/jewelry.db.
    DATABASE_URL: str = ""
    # None means: generate one at first start, keep only its hash, print it once.
    ADMIN_API_KEY: SecretStr | None = None
    PUBLIC_READS: bool = True
    # Where `jewelry-forecast serve` listens, and what `demo` prints: loopback unless told
    # otherwise. The image sets 0.0.0.0, as a published port reaches a container through its
    # own network interface.
    HOST: str = "127.0.0.1"
    PORT: int = Field(8000, ge=1, le=65535)
    MIGRATE_ON_START: bool = True

    MAX_BATCH_RECORDS: int = Field(10_000, ge=1)
    MAX_PREDICT_CARATS: int = Field(100_000, ge=1)
    MAX_BODY_BYTES: int = Field(8 * 1024 * 1024, ge=1024)
    MAX_UPLOAD_BYTES: int = Field(64 * 1024 * 1024, ge=1024)
    MAX_PAGE_SIZE: int = Field(1_000, ge=1)
    # CSV imports each process runs at once; one more is a 429.
    MAX_CONCURRENT_IMPORTS: int = Field(2, ge=1)

    # SQLite: a running training renews its lease every third of this; a killed one's lease
    # is taken over after this long.
    TRAINING_LEASE_SECONDS: float = Field(60.0, gt=0)
    IDEMPOTENCY_TTL_HOURS: float = Field(24.0, gt=0)
    # How stale a worker's view of the active model may be.
    MODEL_REFRESH_SECONDS: float = Field(1.0, gt=0)
    SQLITE_BUSY_TIMEOUT_MS: int = Field(5_000, ge=0)
    # Sized for a 2-core machine: `serve` runs a worker per core, and each worker keeps this
    # many database connections open and opens up to DB_MAX_OVERFLOW more at a peak (two
    # workers: at most 20 PostgreSQL connections, well inside the server's default of 100
    # for a few hosts). A worker's requests hold at most all but 4 of them at once; the rest
    # wait their turn (app/deps.py, Turns).
    WORKERS: int = Field(2, ge=1)
    DB_POOL_SIZE: int = Field(5, ge=1)
    DB_MAX_OVERFLOW: int = Field(5, ge=0)
    # PostgreSQL cancels a statement running longer (0: never). A training on 10M sales sums
    # them in about a second; migrations are exempt.
    DB_STATEMENT_TIMEOUT_MS: int = Field(60_000, ge=0)
    # Housekeeping each worker runs: expired Idempotency-Keys and day-old deletion records
    # are purged every this many seconds, a bounded number of rows at a time.
    MAINTENANCE_SECONDS: float = Field(60.0, gt=0)
    DELETED_SALES_KEEP_HOURS: float = Field(24.0, gt=0)
    LOG_LEVEL: str = "INFO"
    # A message logged at warning or above again and again shows once per this interval,
    # with the count of the repeats it stands for.
    LOG_REPEAT_SECONDS: float = Field(10.0, gt=0)

    # Connections, per worker, and never more than the open-file limit leaves room for. At
    # the limit, the connection that has waited longest for a request, or for the rest of
    # one, makes room for a new one.
    MAX_CONNECTIONS: int = Field(512, ge=1)
    # From connecting (or from the previous response) to the end of the request headers.
    HEADER_TIMEOUT_SECONDS: float = Field(10.0, gt=0)
    # The longest pause while a request body is arriving.
    BODY_TIMEOUT_SECONDS: float = Field(30.0, gt=0)
    # The longest a CSV upload may take from its first byte to its last.
    UPLOAD_TIMEOUT_SECONDS: float = Field(600.0, gt=0)
    # The longest a client may leave its response unread (the socket's buffer full).
    WRITE_TIMEOUT_SECONDS: float = Field(30.0, gt=0)

    @field_validator("DATABASE_URL")
    @classmethod
    def _normalise_url(cls, url: str) -> str:
        # Accept the URLs hosting platforms hand out and pin the psycopg 3 driver.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.DATABASE_URL:
            self.DATABASE_URL = f"sqlite:///{self.DATA_DIR / 'jewelry.db'}"
        return self

    @property
    def admin_key_file(self) -> Path:
        return self.DATA_DIR / "admin-key"

    @field_validator("ADMIN_API_KEY")
    @classmethod
    def _refuse_weak_admin_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not 16 <= len(key.get_secret_value()) <= MAX_KEY_LENGTH:
            raise ValueError(
                f"JEWELRY_ADMIN_API_KEY must be 16 to {MAX_KEY_LENGTH} characters long"
            )
        return key
