-- Answers to the anonymous questionnaire (`registration.feedback.submitted`). Neither table names a
-- person, a registration, a request, a company or a link token: registration sends none of them, and
-- the event's id is random. Times are kept as the day only.
-- Scores: a projection of the raw log (rebuilt with the others).
CREATE TABLE feedback_answers (
    event_id        text     PRIMARY KEY,
    offering_id     text     NOT NULL,
    received_on     date     NOT NULL,
    rating          smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    usefulness      smallint NOT NULL CHECK (usefulness BETWEEN 1 AND 5),
    would_recommend boolean  NOT NULL
);
CREATE INDEX feedback_answers_offering ON feedback_answers (offering_id);

-- Free text, for the staff of the offering's node only (`GET /feedback/comments?node=…`). Kept out of
-- the raw log (which drops every free text), so no figure, export, snapshot or KPI event can reach it;
-- not a projection: a rebuild leaves it alone.
CREATE TABLE feedback_comments (
    event_id    text PRIMARY KEY,
    offering_id text NOT NULL,
    received_on date NOT NULL,
    comment     text NOT NULL CHECK (char_length(comment) <= 2000)
);
CREATE INDEX feedback_comments_offering ON feedback_comments (offering_id, received_on);
