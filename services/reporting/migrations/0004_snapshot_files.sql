-- A snapshot may be downloaded in more than one format (the JSON document in `snapshots`, the PDF here);
-- each file is rendered once, when the snapshot is taken, and served byte for byte ever after.
CREATE TABLE snapshot_files (
    snapshot_id text NOT NULL REFERENCES snapshots (snapshot_id),
    media_type text NOT NULL,
    sha256 text NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (snapshot_id, media_type)
);
