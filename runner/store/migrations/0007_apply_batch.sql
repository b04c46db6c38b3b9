-- A transition's writes as one call: `dwf_apply` takes the lease fence and applies a JSON array
-- of operations in order. Sent as one statement in autocommit, a transition costs one round trip
-- and no BEGIN/COMMIT exchange; the client encodes one JSON document instead of a dozen
-- parameter sets (runner/store/batch.py builds the operations).
CREATE FUNCTION dwf_apply(p_tenant text, p_execution_id uuid, p_owner text, p_ops jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    op jsonb;
BEGIN
    IF p_owner IS NOT NULL THEN
        PERFORM dwf_hold_lease(p_execution_id, p_owner);
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
        -- Fenced by status: a finished execution never changes again. Its queue row goes, and a
        -- parent parked waiting for it is made claimable again.
        WHEN 'finish_execution' THEN
            UPDATE workflow_executions
            SET status = op->>'status', outputs = NULLIF(op->'outputs', 'null'),
                error = NULLIF(op->'error', 'null'), finished_at = clock_timestamp()
            WHERE execution_id = p_execution_id AND status IN ('Pending', 'Running');
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
