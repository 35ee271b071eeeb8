-- dagq:compatible-with 24
-- Respond links for waits with forms (issue 33, item 4; docs/forms.md). A respond link
-- answers one signal wait once, without an API key: POST /v1/respond/{token}. Only the
-- token's SHA-256 is stored here; the token itself is shown once, to whoever the link is
-- issued to: a key that may answer the wait (GET /v1/runs/{id}/waits, GET /v1/waits
-- mint a fresh link per listing) or a webhook subscription of the run's tenant (the
-- node_waiting delivery carries one, minted by the trigger below as the delivery row is
-- written, in the transaction where the node starts waiting).
--
-- A new table and triggers on dagq.webhook_deliveries that only add a key to a
-- node_waiting delivery's payload: code at 24 keeps working (it never reads the table and
-- sends a payload as it finds it).
CREATE TABLE dagq.respond_links (
    token_hash  bytea       PRIMARY KEY,        -- sha256 of the token's UTF-8 bytes
    run_id      uuid        NOT NULL REFERENCES dagq.runs (id) ON DELETE CASCADE,
    node_key    text        NOT NULL,
    -- The wait it answers: the node's started_at when the link was issued. A retried
    -- run waits again with a new started_at, and an older link no longer answers it.
    waiting_since timestamptz NOT NULL,
    tenant      text        NOT NULL,
    issued_to   text        NOT NULL,           -- 'key <id>' or 'webhook <id>': an audit
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,                    -- set by the one respond it allowed
    CHECK (expires_at > created_at)
);
CREATE INDEX respond_links_run ON dagq.respond_links (run_id, node_key);

COMMENT ON TABLE dagq.respond_links IS
    'Single-use, expiring links that answer a signal wait without an API key '
    '(POST /v1/respond/{token}); only the token''s sha256 is kept.';

-- A node_waiting delivery carries a fresh link: {"respond": {"token", "path",
-- "expires_at"}}. The token is 244 random bits (two v4 UUIDs from pg_strong_random).
CREATE FUNCTION dagq.respond_link_for_delivery() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    node record;
    token text;
    expires timestamptz;
BEGIN
    SELECT t.started_at, t.wait_spec INTO node FROM dagq.node_tasks t
    WHERE t.run_id = NEW.run_id AND t.node_key = NEW.payload ->> 'node_key'
      AND t.status = 'waiting' AND t.wait_spec ? 'signal';
    IF NOT FOUND OR node.started_at IS NULL THEN
        RETURN NEW;
    END IF;
    token := 'dqr_' || translate(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    expires := now() + make_interval(
        secs => coalesce((node.wait_spec ->> 'respond_ttl_s')::float8, 604800));
    INSERT INTO dagq.respond_links (token_hash, run_id, node_key, waiting_since, tenant,
                                    issued_to, expires_at)
    VALUES (sha256(convert_to(token, 'UTF8')), NEW.run_id, NEW.payload ->> 'node_key',
            node.started_at, NEW.tenant, 'webhook ' || NEW.webhook_id, expires);
    NEW.payload := NEW.payload || jsonb_build_object('respond', jsonb_build_object(
        'token', token, 'path', '/respond/' || token, 'expires_at', expires));
    RETURN NEW;
END
$$;

CREATE TRIGGER webhook_deliveries_respond_link BEFORE INSERT ON dagq.webhook_deliveries
    FOR EACH ROW WHEN (NEW.event = 'node_waiting')
    EXECUTE FUNCTION dagq.respond_link_for_delivery();

-- Once a delivery is done (succeeded or given up), its token leaves the outbox: from then
-- on only its hash exists. A manual redeliver sends the payload without it (a key lists
-- the wait with a fresh link instead).
CREATE FUNCTION dagq.respond_link_scrub() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.payload := jsonb_set(NEW.payload, '{respond}',
                             (NEW.payload -> 'respond') - 'token' - 'path');
    RETURN NEW;
END
$$;

CREATE TRIGGER webhook_deliveries_respond_scrub BEFORE UPDATE ON dagq.webhook_deliveries
    FOR EACH ROW WHEN (NEW.status <> 'pending' AND NEW.payload -> 'respond' ? 'token')
    EXECUTE FUNCTION dagq.respond_link_scrub();
