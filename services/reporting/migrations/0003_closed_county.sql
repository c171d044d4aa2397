-- County is a closed list (contracts `County`): free text a registrant typed into the company's county
-- before that must not reach any figure. Codes and German labels become codes (matched like `County`
-- matches them on input), anything else becomes null (companies) or 'unbekannt' (nodes). The service
-- reduces every value again when it projects the log (`domain.county_code`); this cleans what is stored.
-- Frozen snapshots stay byte for byte as they were.
CREATE FUNCTION pg_temp.county_code(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT m.code FROM (VALUES
        ('altenburger_land', 'altenburger_land'),
        ('ausserhalb', 'ausserhalb'),
        ('ausserhalb_thueringens', 'ausserhalb'),
        ('eichsfeld', 'eichsfeld'),
        ('eisenach', 'wartburgkreis'),
        ('erfurt', 'erfurt'),
        ('gera', 'gera'),
        ('gotha', 'gotha'),
        ('greiz', 'greiz'),
        ('hildburghausen', 'hildburghausen'),
        ('ilm_kreis', 'ilm_kreis'),
        ('jena', 'jena'),
        ('kyffhaeuserkreis', 'kyffhaeuserkreis'),
        ('nordhausen', 'nordhausen'),
        ('saale_holzland_kreis', 'saale_holzland_kreis'),
        ('saale_orla_kreis', 'saale_orla_kreis'),
        ('saalfeld_rudolstadt', 'saalfeld_rudolstadt'),
        ('schmalkalden_meiningen', 'schmalkalden_meiningen'),
        ('soemmerda', 'soemmerda'),
        ('sonneberg', 'sonneberg'),
        ('suhl', 'suhl'),
        ('unstrut_hainich_kreis', 'unstrut_hainich_kreis'),
        ('wartburgkreis', 'wartburgkreis'),
        ('weimar', 'weimar'),
        ('weimarer_land', 'weimarer_land')
    ) AS m(key, code)
    WHERE m.key = regexp_replace(
        replace(replace(replace(replace(
            regexp_replace(
                regexp_replace(
                    regexp_replace(lower(value), '^\s+|\s+$', '', 'g'),
                    '^(landkreis )?(lk )?(kreisfreie stadt )?(stadt )?', ''
                ),
                ' \(kreisfreie stadt\)$', ''
            ),
            'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss'),
        '[\s\-]+', '_', 'g'
    )
$$;

UPDATE event_log
SET data = jsonb_set(data, '{company,county}', coalesce(to_jsonb(pg_temp.county_code(data #>> '{company,county}')), 'null'::jsonb))
WHERE jsonb_typeof(data #> '{company,county}') = 'string'
  AND pg_temp.county_code(data #>> '{company,county}') IS DISTINCT FROM data #>> '{company,county}';

UPDATE event_log
SET data = (data - 'town') || jsonb_build_object('county', pg_temp.county_code(data ->> 'county'))
WHERE type = 'catalogue.node.published';

UPDATE registrations SET company_county = pg_temp.county_code(company_county)
WHERE company_county IS DISTINCT FROM pg_temp.county_code(company_county);

UPDATE nodes SET town = NULL, county = coalesce(pg_temp.county_code(county), 'unbekannt');

-- The next KPI event carries the cleaned groups.
UPDATE kpi_state SET emitted_count = -1;

DROP FUNCTION pg_temp.county_code(text);
