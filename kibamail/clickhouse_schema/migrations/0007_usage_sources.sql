-- Usage by source (issue 15): which API key (its id) or SMTP credential (its username)
-- authenticated the submission, from the message mapping the intake wrote. Broadcasts,
-- dashboard sends and rows written before this migration read '' for both.
ALTER TABLE $db.raw_message_events $on_cluster
    ADD COLUMN IF NOT EXISTS api_key_id LowCardinality(String) DEFAULT '' AFTER tags;
ALTER TABLE $db.raw_message_events $on_cluster
    ADD COLUMN IF NOT EXISTS smtp_credential_id LowCardinality(String) DEFAULT '' AFTER api_key_id
