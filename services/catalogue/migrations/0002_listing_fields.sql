-- Pre-formatted fields of the public listing, written with every change of an offering (store._values),
-- so that `GET /offerings` builds a page's JSON in one query without formatting dates per request:
-- the sessions as the API's JSON array (local times in Europe/Berlin), their teaching units, and the
-- first start, last end and registration deadline as ISO 8601 local time with offset.
ALTER TABLE offerings
    ADD COLUMN listing_sessions json,
    ADD COLUMN listing_units    integer,
    ADD COLUMN listing_starts   text,
    ADD COLUMN listing_ends     text,
    ADD COLUMN listing_deadline text;

-- Existing rows: the same format as Python's `datetime.isoformat()` in Europe/Berlin.
CREATE FUNCTION pg_temp.iso_berlin(moment timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(moment AT TIME ZONE 'Europe/Berlin', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM moment)::bigint % 1000000 <> 0
                THEN to_char(moment AT TIME ZONE 'Europe/Berlin', '.US') ELSE '' END
        || CASE WHEN (moment AT TIME ZONE 'Europe/Berlin') < (moment AT TIME ZONE 'UTC')
                THEN '-' || to_char((moment AT TIME ZONE 'UTC') - (moment AT TIME ZONE 'Europe/Berlin'), 'HH24:MI')
                ELSE '+' || to_char((moment AT TIME ZONE 'Europe/Berlin') - (moment AT TIME ZONE 'UTC'), 'HH24:MI')
           END
$$;

UPDATE offerings o SET
    listing_sessions = coalesce(s.sessions, '[]'::json),
    listing_units = coalesce(s.units, 0),
    listing_starts = pg_temp.iso_berlin(o.first_starts_at),
    listing_ends = pg_temp.iso_berlin(o.last_ends_at),
    listing_deadline = pg_temp.iso_berlin(o.registration_deadline)
FROM offerings o2
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('session_id', x.session_id, 'starts_at', pg_temp.iso_berlin(x.starts_at),
                                      'ends_at', pg_temp.iso_berlin(x.ends_at), 'location', x.location,
                                      'teaching_units', x.teaching_units) ORDER BY x.position) AS sessions,
           sum(x.teaching_units)::integer AS units
    FROM sessions x WHERE x.offering_id = o2.offering_id
) s ON true
WHERE o2.offering_id = o.offering_id;

DROP FUNCTION pg_temp.iso_berlin(timestamptz);

ALTER TABLE offerings
    ALTER COLUMN listing_sessions SET NOT NULL,
    ALTER COLUMN listing_units SET NOT NULL,
    ALTER COLUMN listing_starts SET NOT NULL,
    ALTER COLUMN listing_ends SET NOT NULL;

-- Totals of the listing (`count(*)` when a page is full): a narrow index holding every column the
-- filters test, so the count is an index-only scan instead of reading the wide offering rows.
CREATE INDEX offerings_counting ON offerings (status, last_ends_at, first_starts_at)
    INCLUDE (node_id, topic, kind, capacity, offering_id);
