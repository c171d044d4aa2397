-- A person moved off the waiting list by hand (an organiser's decision, POST .../promote): who decided
-- (the staff console's X-Staff-Actor) and when. Automatic promotions leave both empty.
ALTER TABLE registrations ADD COLUMN promoted_by text;
ALTER TABLE registrations ADD COLUMN promoted_at timestamptz;
