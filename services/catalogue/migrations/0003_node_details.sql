-- Nodes opened through the staff API: a short description, a contact person, a revision that grows with
-- every change (it orders `catalogue.node.updated`), and one node per name.

ALTER TABLE nodes
    ADD COLUMN description   text,
    ADD COLUMN contact_name  text,
    ADD COLUMN contact_email text,
    ADD COLUMN contact_phone text,
    ADD COLUMN revision      integer NOT NULL DEFAULT 1 CHECK (revision >= 1);

CREATE UNIQUE INDEX nodes_unique_name ON nodes (lower(name));
