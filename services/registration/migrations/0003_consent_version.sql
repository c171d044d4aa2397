-- The version of the privacy notice each person consented to (DSGVO Art. 7(1): the controller must be
-- able to show the consent). The consent's time is the registration's `created_at`; rows from before
-- this migration were made by frontends that did not send a version, so theirs stays NULL.
ALTER TABLE registrations ADD COLUMN privacy_notice_version text;
