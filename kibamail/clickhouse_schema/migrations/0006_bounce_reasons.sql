-- Bounce reasons (issue 13): every status event carries the classifier's reason and action
-- (kibamail.bounces: "user_unknown" / "suppress", "blocked" / "fix_our_side", ...) and the
-- MTA's provider group (by recipient domain, then MX host). Rows written before this
-- migration read '' for all three.
ALTER TABLE $db.raw_message_events $on_cluster
    ADD COLUMN IF NOT EXISTS provider_group LowCardinality(String) DEFAULT '' AFTER transcript;
ALTER TABLE $db.raw_message_events $on_cluster
    ADD COLUMN IF NOT EXISTS bounce_reason LowCardinality(String) DEFAULT '' AFTER provider_group;
ALTER TABLE $db.raw_message_events $on_cluster
    ADD COLUMN IF NOT EXISTS bounce_action LowCardinality(String) DEFAULT '' AFTER bounce_reason
