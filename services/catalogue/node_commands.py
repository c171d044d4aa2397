"""Staff commands on QTI nodes: open a node, change it. Each announces the node's new state through the
outbox in the same unit of work as the change."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg

from qti_runtime.db import Database
from qti_runtime.unit_of_work import unit_of_work
from services.catalogue import store
from services.catalogue.domain import Node
from services.catalogue.handlers import (
    NODE_NOT_FOUND,
    Conflict,
    Invalid,
    NotFound,
    emit_node_published,
    emit_node_updated,
)
from services.catalogue.node_rules import tidy_node, validate_node

NAME_TAKEN = "Einen QTI-Knoten mit diesem Namen gibt es bereits."


def _checked(node: Node) -> Node:
    tidy = tidy_node(node)
    problems = validate_node(tidy)
    if problems:
        raise Invalid(problems)
    return tidy


async def open_node(db: Database, node: Node) -> Node:
    """Store a new node and announce it (`catalogue.node.published`)."""
    new = _checked(node)
    try:
        async with unit_of_work(db) as uow:
            if not await store.insert_node_if_missing(uow.conn, new):
                raise Conflict("Einen QTI-Knoten mit dieser ID gibt es bereits.")
            emit_node_published(uow, new)
    except asyncpg.UniqueViolationError:
        raise Conflict(NAME_TAKEN) from None
    return new


async def change_node(db: Database, node_id: UUID, changes: Mapping[str, Any]) -> Node:
    """Apply a partial change (field name → new value) and announce the new state
    (`catalogue.node.updated`); a change that changes nothing keeps the revision and sends nothing."""
    try:
        async with unit_of_work(db) as uow:
            current = await store.get_node(uow.conn, node_id, for_update=True)
            if current is None:
                raise NotFound(NODE_NOT_FOUND)
            new = _checked(dataclasses.replace(current, **changes))
            if new == current:
                return current
            new = dataclasses.replace(new, revision=current.revision + 1)
            await store.update_node(uow.conn, new)
            emit_node_updated(uow, new)
    except asyncpg.UniqueViolationError:
        raise Conflict(NAME_TAKEN) from None
    return new
