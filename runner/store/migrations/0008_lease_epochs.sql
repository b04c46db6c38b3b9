-- Fencing tokens and transitions that may be sent twice.
--
-- A lease's owner name is not enough to fence: the same process can claim an execution again
-- after losing its lease (a database outage longer than the lease), and then two conductors of
-- one process would both pass a fence that checks only the name. Every claim now gives the
-- execution a new `lease_epoch`; a write passes the fence only with the (owner, epoch) of the
-- current claim, so a conductor from any earlier claim, in this process or another, writes
-- nothing.
--
-- A transition whose connection fails may or may not have committed; the worker sends it again
-- on a fresh connection. Each transition of a claim carries a sequence number, and the queue row
-- remembers the last one applied (`applied_seq`, reset by each claim): a repeat of a transition
-- that did commit changes nothing.

ALTER TABLE execution_queue
    ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0),
    ADD COLUMN applied_seq bigint NOT NULL DEFAULT 0 CHECK (applied_seq >= 0);

DROP FUNCTION dwf_apply(text, uuid, text, jsonb);
DROP FUNCTION dwf_hold_lease(uuid, text);

-- The fence. True when the caller holds the lease and this transition is new: the row is then
-- locked (a concurrent reclaim waits for this transaction) and records the transition. False
-- when the caller holds the lease and the transition was applied already (a repeat). Raises
-- DWL01 when the lease is another claim's.
CREATE FUNCTION dwf_hold_lease(p_execution_id uuid, p_owner text, p_epoch bigint, p_seq bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE execution_queue SET applied_seq = p_seq
    WHERE execution_id = p_execution_id AND status = 'claimed' AND lease_owner = p_owner
      AND lease_epoch = p_epoch AND applied_seq < p_seq;
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM 1 FROM execution_queue
    WHERE execution_id = p_execution_id AND status = 'claimed' AND lease_owner = p_owner
      AND lease_epoch = p_epoch;
    IF FOUND THEN
        RETURN false;
    END IF;
    RAISE EXCEPTION 'lease on execution % is not held by % (epoch %)',
        p_execution_id, p_owner, p_epoch USING ERRCODE = 'DWL01';
END;
$$;

-- A transition's writes as one call: the fence, then a JSON array of operations in order (see
-- migration 0007 for the operations; `finish_execution` now also closes any attempt still
-- Running, so no attempt outlives its execution).
CREATE FUNCTION dwf_apply(
    p_tenant text, p_execution_id uuid, p_owner text, p_epoch bigint, p_seq bigint, p_ops jsonb
)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    op jsonb;
BEGIN
    IF p_owner IS NOT NULL AND NOT dwf_hold_lease(p_execution_id, p_owner, p_epoch, p_seq) THEN
        RETURN;  -- a repeat of a transition that committed
    END IF;
    FOR op IN SELECT value FROM jsonb_array_elements(p_ops) LOOP
        CASE op->>'op'
        WHEN 'event' THEN
            INSERT INTO execution_events (tenant, execution_id, node_id, attempt, kind, data)
            VALUES (p_tenant, p_execution_id, op->>'node', (op->>'attempt')::integer,
                    op->>'kind', COALESCE(op->'data', '{}'));
        WHEN 'start_attempt' THEN
            INSERT INTO action_executions (tenant, execution_id, node_id, attempt, action_type,
                status, parameters_json, started_at)
            VALUES (p_tenant, p_execution_id, op->>'node', (op->>'attempt')::integer,
                    op->>'type', 'Running', NULLIF(op->'params', 'null'), clock_timestamp());
        -- Fenced by status: only a Running attempt ends.
        WHEN 'finish_attempt' THEN
            UPDATE action_executions
            SET status = op->>'status', outputs_json = NULLIF(op->'outputs', 'null'),
                error_json = NULLIF(op->'error', 'null'), reused = (op->>'reused')::boolean,
                finished_at = clock_timestamp()
            WHERE execution_id = p_execution_id AND node_id = op->>'node'
              AND attempt = (op->>'attempt')::integer AND status = 'Running';
        WHEN 'record_attempt' THEN
            INSERT INTO action_executions (tenant, execution_id, node_id, attempt, action_type,
                status, parameters_json, outputs_json, error_json, reused, started_at, finished_at)
            VALUES (p_tenant, p_execution_id, op->>'node', (op->>'attempt')::integer,
                    op->>'type', op->>'status', NULLIF(op->'params', 'null'),
                    NULLIF(op->'outputs', 'null'), NULLIF(op->'error', 'null'),
                    (op->>'reused')::boolean, clock_timestamp(), clock_timestamp());
        WHEN 'fail_running' THEN
            UPDATE action_executions
            SET status = 'Failed', error_json = op->'error', finished_at = clock_timestamp()
            WHERE execution_id = p_execution_id AND status = 'Running';
        WHEN 'link' THEN
            INSERT INTO workflow_resource_links (tenant, workflow_id, node_id, idempotency_key,
                execution_id, action_execution_id, system, resource_type, external_id, url,
                outputs)
            SELECT p_tenant, op->>'workflow', op->>'node', op->>'key', p_execution_id,
                   action_execution_id, op->>'system', op->>'resourceType', op->>'externalId',
                   op->>'url', NULLIF(op->'outputs', 'null')
            FROM action_executions
            WHERE execution_id = p_execution_id AND node_id = op->>'node'
              AND attempt = (op->>'attempt')::integer;
        WHEN 'start_execution' THEN
            UPDATE workflow_executions
            SET status = 'Running', vars = NULLIF(op->'vars', 'null'),
                started_at = clock_timestamp()
            WHERE execution_id = p_execution_id AND status = 'Pending';
        -- Fenced by status: a finished execution never changes again. Its attempts still
        -- Running end Cancelled, its queue row goes, and a parent parked waiting for it is made
        -- claimable again.
        WHEN 'finish_execution' THEN
            UPDATE workflow_executions
            SET status = op->>'status', outputs = NULLIF(op->'outputs', 'null'),
                error = NULLIF(op->'error', 'null'), finished_at = clock_timestamp()
            WHERE execution_id = p_execution_id AND status IN ('Pending', 'Running');
            UPDATE action_executions
            SET status = 'Cancelled', finished_at = clock_timestamp(),
                error_json = jsonb_build_object('type', 'Cancelled', 'message',
                    'the execution ended while this attempt was running', 'nodeId', node_id)
            WHERE execution_id = p_execution_id AND status = 'Running';
            DELETE FROM execution_queue WHERE execution_id = p_execution_id;
            IF op->>'parent' IS NOT NULL THEN
                UPDATE execution_queue SET status = 'ready', available_at = now()
                WHERE execution_id = (op->>'parent')::uuid AND status = 'waiting';
                PERFORM pg_notify('dwf_child', op->>'parent'), pg_notify('dwf_queue', '');
            END IF;
        WHEN 'park' THEN
            UPDATE execution_queue
            SET status = 'waiting', lease_owner = NULL, lease_expires_at = NULL, deliveries = 0
            WHERE execution_id = p_execution_id;
        WHEN 'dead_letter' THEN
            INSERT INTO dead_letters (execution_id, tenant, deliveries, reason, last_lease_owner)
            VALUES (p_execution_id, p_tenant, (op->>'deliveries')::integer, op->>'reason',
                    op->>'owner')
            ON CONFLICT (execution_id) DO NOTHING;
        ELSE
            RAISE EXCEPTION 'dwf_apply: unknown operation %', op->>'op';
        END CASE;
    END LOOP;
END;
$$;
