"""The schema comes only from the migrations: up, down and up again, equal to the ORM."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from app import migrate
from app.config import Settings
from app.db import Database
from app.orm import Base, ModelVersion, utcnow
from models import RingPriceRegressor


@pytest.fixture
def unmigrated_db(database_url: str) -> Database:
    db = Database(Settings(DATABASE_URL=database_url))
    migrate.downgrade(db.engine, "base")
    return db


def test_upgrade_downgrade_upgrade(unmigrated_db: Database) -> None:
    db = unmigrated_db
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(db.engine)
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert {"stores", "sales", "model_versions", "active_model", "idempotency_keys"} <= tables
    migrate.downgrade(db.engine, "base")
    assert migrate.current_revision(db.engine) is None
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(db.engine)
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    db.dispose()


def test_data_migrations_normalise_store_names_and_compact_stored_models(
    unmigrated_db: Database,
) -> None:
    """Rows written before a revision come out of it as the code now writes them."""
    db = unmigrated_db
    migrate.upgrade(db.engine, "4a2f2fef7601")  # before NFC names and serving-form models
    fitted = RingPriceRegressor().fit([1.0, 2.0, 3.0, 4.0], [150.0, 250.0, 250.0, 380.0])
    with db.engine.begin() as connection:
        names = ["Cafe\u0301", "Caf\u00e9", "Plain"]  # the first two are one name in NFC
        for name in names:
            connection.execute(
                text("INSERT INTO stores (name, created_at) VALUES (:n, :t)"),
                {"n": name, "t": "2026-01-01 00:00:00"},
            )
        connection.execute(
            ModelVersion.__table__.insert().values(
                created_at=utcnow(), status="converged", method="batch",
                parameters={}, filters={}, silver_price=fitted.silver_price_,
                gold_price_per_carat=fitted.gold_price_per_carat_,
                metrics=fitted.report_.to_dict(), iterations=fitted.n_iter_, converged=True,
                n_samples=4, training_seconds=0.0, cost_history=fitted.cost_history_.to_dict(),
                estimator=fitted.to_dict(), trained_through_sale_id=4,
            )
        )  # fmt: skip
    migrate.upgrade(db.engine)
    with db.engine.connect() as connection:
        stored = connection.execute(text("SELECT id, name FROM stores ORDER BY id")).all()
        estimator = connection.execute(select(ModelVersion.__table__.c.estimator)).scalar_one()
    assert [name for _, name in stored] == ["Caf\u00e9", f"Caf\u00e9 ({stored[1][0]})", "Plain"]
    assert "cost_history" not in estimator and "report" not in estimator
    served = RingPriceRegressor.from_dict(estimator)
    assert served.predict([7.0]).tolist() == fitted.predict([7.0]).tolist()
    # Rebuilt for AUTOINCREMENT on SQLite: the row kept, and the deleted newest id not reused.
    table = ModelVersion.__table__
    with db.engine.begin() as connection:
        row = connection.execute(select(table)).mappings().one()
        connection.execute(table.delete())
        again = connection.execute(
            table.insert()
            .values({k: v for k, v in row.items() if k != "version"})
            .returning(table.c.version)
        ).scalar_one()
    assert again == 2
    migrate.downgrade(db.engine, "fba6cd6cdd1a")
    with db.engine.connect() as connection:
        whole = connection.execute(select(ModelVersion.__table__.c.estimator)).scalar_one()
    assert RingPriceRegressor.from_dict(whole).report_.rmse == fitted.report_.rmse
    db.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}"))
    with db.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == 5000
    db.dispose()
