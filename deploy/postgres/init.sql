-- Roles for the compose stack (run once by the postgres image in the `qti` database).
-- Each service has a login role that owns only the schema named after it; nobody but the owner may
-- create objects elsewhere. Passwords here are development defaults: production sets its own.

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE qti FROM PUBLIC;

CREATE ROLE catalogue    LOGIN PASSWORD 'catalogue-dev-password';
CREATE ROLE registration LOGIN PASSWORD 'registration-dev-password';
CREATE ROLE notification LOGIN PASSWORD 'notification-dev-password';
CREATE ROLE reporting    LOGIN PASSWORD 'reporting-dev-password';

GRANT CONNECT, TEMPORARY ON DATABASE qti TO catalogue, registration, notification, reporting;

CREATE SCHEMA catalogue    AUTHORIZATION catalogue;
CREATE SCHEMA registration AUTHORIZATION registration;
CREATE SCHEMA notification AUTHORIZATION notification;
CREATE SCHEMA reporting    AUTHORIZATION reporting;

-- A service's migrations run `CREATE SCHEMA IF NOT EXISTS <service>`, which needs no privilege when the
-- schema exists. No role gets USAGE on another service's schema: services share nothing but events.
