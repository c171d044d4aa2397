-- Offer alerts and interest (notification.alert.* events): which template a notification was, and one
-- row per subscription, without any address or pseudonym of the person: kind, what it asks for, when it
-- was confirmed and how it ended. Figures: alert mails sent, sign-ups confirmed, unmet demand (confirmed
-- interest not (yet) fulfilled by a published offering) per topic and county, all under the one
-- suppression rule.
ALTER TABLE notifications ADD COLUMN template text;

CREATE TABLE alert_subscriptions (
    subscription_id text PRIMARY KEY,
    kind            text        NOT NULL,
    topics          text[]      NOT NULL DEFAULT '{}',
    counties        text[]      NOT NULL DEFAULT '{}',
    subscribed_at   timestamptz,
    confirmed_at    timestamptz,
    ended_at        timestamptz,
    end_cause       text
);
