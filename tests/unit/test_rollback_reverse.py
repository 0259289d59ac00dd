"""The reverse (new -> old) column mapping of rollback scenario 3 is strict."""

from __future__ import annotations

import pytest


def test_reverse_mapping_is_strict():
    from migration_engine.config import load_config
    from migration_engine.rollback.reverse import ReverseMapping, ReverseMappingError

    entity = load_config().entities["listings"]
    rev = ReverseMapping(entity, "listings")
    row = {"id": 7, "title": "t", "description": None, "price_cents": 100, "status": "paused", "created_at": 1,
           "updated_at": 2, "provider_id": 3}
    assert rev.to_old(row, {"provider_id": {3: 42}}) == {
        "title": "t", "description": None, "price_cents": 100, "status": "PAUSED", "created_at": 1, "updated_at": 2,
        "tenant_id": 42}
    with pytest.raises(ReverseMappingError, match="status='weird'"):
        rev.to_old({**row, "status": "weird"}, {"provider_id": {3: 42}})
    with pytest.raises(ReverseMappingError, match="no row with id=3"):
        rev.to_old(row, {"provider_id": {}})
    ambiguous = entity.model_copy(update={"columns": [
        c.model_copy(update={"map": {"ACTIVE": "active", "LIVE": "active"}}) if c.new == "status" else c
        for c in entity.columns]})
    with pytest.raises(ReverseMappingError, match="cannot be reversed"):
        ReverseMapping(ambiguous, "listings")
