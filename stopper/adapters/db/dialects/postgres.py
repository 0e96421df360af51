"""PostgreSQL: many rows in one statement over `unnest` arrays, reads without a transaction."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, ColumnElement, Table, Uuid, any_, bindparam, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from stopper.adapters.db.dialects.base import CaseRows, Database, RecordedCases, table_of
from stopper.adapters.db.models import (
    NAMING_PREDICATE,
    AccountRow,
    Base,
    CaseRow,
    HoldRow,
    HoldTransitionRow,
    OutboxRow,
    TransferRow,
    VictimRow,
)
from stopper.domain.mules import CASES_COUNTED

# The outbox relay's turn (`take_relay_turn`): an advisory lock key of Stopper's own ("STOPRLAY").
_RELAY_LOCK = int.from_bytes(b"STOPRLAY", "big") & 0x7FFF_FFFF_FFFF_FFFF


class PostgresDatabase(Database):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # Reads run without a transaction: under READ COMMITTED each statement sees its own
        # snapshot either way, and BEGIN and ROLLBACK were two of a lone read's three round
        # trips (the api asks for a report's fingerprint before publishing it).
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._reads.connect()

    async def take_relay_turn(self, connection: AsyncConnection) -> bool:
        # A transaction-scoped advisory lock: released by the commit, or by the session's end
        # if the relay dies; a relay that finds it taken returns at once (try, never wait).
        taken = await connection.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _RELAY_LOCK}
        )
        return bool(taken.scalar_one())

    def _insert(self, model: type[Base]) -> postgresql.Insert:
        return postgresql.insert(model)

    def id_among(self, column: Any, ids: Sequence[UUID]) -> ColumnElement[bool]:
        # `= ANY($1)`: one statement whatever the number of ids, so it is prepared once (an IN
        # list is a new statement for each length).
        among: ColumnElement[bool] = column == any_(
            bindparam("ids", list(ids), type_=postgresql.ARRAY(Uuid))
        )
        return among

    def among_ids(self, column: Any) -> ColumnElement[bool]:
        ids = bindparam("ids", type_=postgresql.ARRAY(column.type))
        among: ColumnElement[bool] = column == any_(ids)
        return among

    async def insert_rows(
        self, connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        # One statement over arrays whatever the number of rows: one round trip, one
        # execution, prepared once (an executemany is one execution per row).
        if not rows:
            return
        table = table_of(model)
        columns = tuple(rows[0])
        await connection.execute(
            _unnest_insert(connection.dialect, table, columns),
            {column: _array(table, column, rows) for column in columns},
        )

    async def update_by_id(
        self, connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if not rows:
            return
        columns = tuple(c for c in rows[0] if c != "row_id")
        await connection.execute(
            _unnest_update(connection.dialect, table_of(model), columns),
            {c: [row[c] for row in rows] for c in ("row_id", *columns)},
        )

    async def record_cases(self, rows: CaseRows) -> RecordedCases:
        # Every row of the batch in one statement (`_record_cases`), which commits by itself:
        # one round trip instead of a transaction of eight.
        params = case_parameters(rows)
        async with self.read() as connection:
            written = await connection.execute(_record_cases(connection.dialect), params)
            recorded = RecordedCases(created=set(), earlier_cases={})
            for kind, row_id, cases in written:
                if kind == "case":
                    recorded.created.add(row_id)
                elif cases:
                    recorded.earlier_cases[row_id] = int(cases)
            return recorded


def case_parameters(rows: CaseRows) -> dict[str, Any]:
    """The parameters of `_record_cases` for a batch: each column of each table as one array."""
    params: dict[str, Any] = {"cases_counted": CASES_COUNTED}
    for model, values in rows.by_table():
        name = model.__tablename__
        columns = written_columns(table_of(model))
        expected = set(columns)
        for row in values:
            if row.keys() != expected:
                raise ValueError(f"{name}: a row of {sorted(row)}, not of {columns}")
        for column in columns:
            params[f"{name}__{column}"] = _array(table_of(model), column, values)
    outbox = table_of(OutboxRow)
    for column in written_columns(outbox):
        params[f"outbox__{column}"] = _array(outbox, column, rows.events)
    return params


def _array(table: Table, column: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """One column of `rows` as an array parameter of a text statement. Such a statement's
    parameters skip the column's type, so a JSON column's values go as JSON text."""
    if column in _json_columns(table):
        return [json.dumps(row[column]) for row in rows]
    return [row[column] for row in rows]


def written_columns(table: Table) -> tuple[str, ...]:
    """The columns a new row gives: all but an id the database numbers."""
    return tuple(c.name for c in table.columns if not (c.primary_key and c.autoincrement is True))


@functools.cache
def _record_cases(dialect: Dialect) -> TextClause:
    """One statement for a batch of opened cases: the cases that are new (`ON CONFLICT DO
    NOTHING` on their ids), then only their victims, holds, transfers, transitions and events
    (outbox rows keyed by case id); the accounts any of them name. Returns the ids of the new
    cases (`case` rows), and for every account of the batch how many cases already named it
    (`account` rows, counted up to `:cases_counted` by its entries in the holds-by-account
    index, as `stopper.adapters.db.naming.cases_naming` counts, its predicate written in):
    every part of a statement
    sees the same snapshot, so these are the holds committed before it, none of the batch's.
    Foreign keys are checked at the end of the statement, when every row is in."""

    def rows(model: type[Base]) -> str:
        table = table_of(model)
        columns = written_columns(table)
        arrays = _arrays(dialect, table, columns, prefix=f"{table.name}__")
        return f"SELECT * FROM unnest({arrays}) AS r({', '.join(columns)})"

    def insert(model: type[Base]) -> str:
        table = table_of(model)
        return f"INSERT INTO {table.name} ({', '.join(written_columns(table))}) "

    return text(
        f"WITH new_cases AS ({insert(CaseRow)}{rows(CaseRow)} "
        "ON CONFLICT DO NOTHING RETURNING id), "
        f"new_accounts AS ({insert(AccountRow)}{rows(AccountRow)} ON CONFLICT DO NOTHING), "
        f"new_victims AS ({insert(VictimRow)}SELECT * FROM ({rows(VictimRow)}) v "
        "WHERE v.case_id IN (SELECT id FROM new_cases)), "
        f"new_holds AS ({insert(HoldRow)}SELECT * FROM ({rows(HoldRow)}) h "
        "WHERE h.case_id IN (SELECT id FROM new_cases) RETURNING id), "
        f"new_transfers AS ({insert(TransferRow)}SELECT * FROM ({rows(TransferRow)}) t "
        "WHERE t.case_id IN (SELECT id FROM new_cases)), "
        f"new_transitions AS ({insert(HoldTransitionRow)}"
        f"SELECT * FROM ({rows(HoldTransitionRow)}) x "
        "WHERE x.hold_id IN (SELECT id FROM new_holds)), "
        f"new_events AS ({insert(OutboxRow)}SELECT * FROM ({rows(OutboxRow)}) o "
        "WHERE o.key IN (SELECT CAST(id AS TEXT) FROM new_cases)) "
        "SELECT 'case' AS kind, id, 0 AS cases FROM new_cases "
        "UNION ALL SELECT 'account', a.id, (SELECT count(*) FROM (SELECT 1 FROM holds h "
        f"WHERE h.account_id = a.id AND h.{NAMING_PREDICATE} LIMIT :cases_counted) n) "
        f"FROM unnest({_arrays(dialect, table_of(AccountRow), ('id',), prefix='accounts__')}) "
        "AS a(id)"
    )


def _arrays(dialect: Dialect, table: Table, columns: Sequence[str], prefix: str = "") -> str:
    """`CAST(:prefix<column> AS <type>[]), ...`: each column's values as one array parameter."""
    return ", ".join(
        f"CAST(:{prefix}{name} AS {table.c[name].type.compile(dialect=dialect)}[])"
        for name in columns
    )


@functools.cache
def _json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, JSON))


@functools.cache
def _unnest_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> TextClause:
    """`INSERT INTO table (columns) SELECT * FROM unnest($1::type[], ...)`, built once per
    shape; a text statement is cached by SQLAlchemy and prepared once per connection."""
    names = ", ".join(f'"{name}"' for name in columns)
    return text(
        f'INSERT INTO "{table.name}" ({names}) '
        f"SELECT * FROM unnest({_arrays(dialect, table, columns)})"
    )


@functools.cache
def _unnest_update(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> TextClause:
    """`UPDATE table SET column = v.column, ... FROM unnest(...) AS v WHERE id = v.row_id`:
    rows of one shape (the columns set) in one statement, built once per shape."""
    names = ", ".join(f'"{name}"' for name in columns)
    sets = ", ".join(f'"{name}" = v."{name}"' for name in columns)
    id_type = table.c.id.type.compile(dialect=dialect)
    return text(
        f'UPDATE "{table.name}" SET {sets} '
        f"FROM unnest(CAST(:row_id AS {id_type}[]), {_arrays(dialect, table, columns)}) "
        f'AS v(row_id, {names}) WHERE "{table.name}".id = v.row_id'
    )
