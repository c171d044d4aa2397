"""Demo loading is idempotent and announced once; the committed OpenAPI document matches the app."""

from __future__ import annotations

from catalogue.harness import drain, running_service, watch_queue

from devtools import demo
from devtools.demo_data import demo_nodes, demo_offerings
from qti_runtime.settings import Settings
from support import eventually

FINGERPRINT = (
    "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM ("
    " SELECT row_to_json(o)::text AS t FROM offerings o"
    " UNION ALL SELECT row_to_json(s)::text FROM sessions s"
    " UNION ALL SELECT row_to_json(n)::text FROM nodes n) rows"
)


async def test_demo_loading_twice_changes_nothing(settings: Settings, amqp_url: str) -> None:
    # The operators' command (python -m devtools.demo) before the service ever ran.
    first = await demo.run(settings)
    published = [o for o in demo_offerings() if o.status.value == "published"]
    assert first == {
        "nodes_created": len(demo_nodes()),
        "offerings_created": len(demo_offerings()),
        "events_emitted": len(demo_nodes()) + len(published),
    }
    async with running_service(settings, nodes=False) as service:
        async with service.runtime.db.pool.acquire() as conn:
            before = await conn.fetchval(FINGERPRINT)
        async with watch_queue(amqp_url, "catalogue.#") as watch:
            # The first load's events leave the outbox once the relay runs; the queue may have been
            # bound after some left, so count by id: every announced event is one of the first load's.
            await eventually(service.outbox_empty, timeout=10)
            early = await drain(watch, settle=0.3)
            assert len({e["id"] for e in early}) == len(early) <= first["events_emitted"]
            second = await demo.load_demo_data(service.runtime.db)
            third = await demo.run(settings)
            assert second == third == {"nodes_created": 0, "offerings_created": 0, "events_emitted": 0}
            await eventually(service.outbox_empty, timeout=10)
            assert await drain(watch, settle=0.5) == []
        async with service.runtime.db.pool.acquire() as conn:
            assert await conn.fetchval(FINGERPRINT) == before
            assert await conn.fetchval("SELECT count(*) FROM offerings") == len(demo_offerings())
        # In a fresh database with the relay already running, every event leaves exactly once.
        async with service.runtime.db.pool.acquire() as conn:
            await conn.execute("TRUNCATE nodes, offerings, sessions CASCADE")
        async with watch_queue(amqp_url, "catalogue.#") as watch:
            counts = await demo.load_demo_data(service.runtime.db)
            await demo.load_demo_data(service.runtime.db)
            await eventually(service.outbox_empty, timeout=10)
            events = await drain(watch, settle=0.5)
        assert (
            len(events)
            == counts["events_emitted"]
            == len({e["id"] for e in events})
            == first["events_emitted"]
        )
        types = [e["type"] for e in events]
        assert types.count("catalogue.node.published") == len(demo_nodes())
        assert types.count("catalogue.offering.published") == len(published)
