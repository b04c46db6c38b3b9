-- The durable queue (an outbox written with the execution), its dead letters, and the lease
-- fence every write of a running execution passes through.

CREATE TABLE execution_queue (
    execution_id     uuid        PRIMARY KEY REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
    tenant           text        NOT NULL DEFAULT 'default',
    -- ready: claimable from available_at; claimed: a worker holds the lease; waiting: parked
    -- until a subworkflow child it waits for ends (it holds no worker slot meanwhile).
    status           text        NOT NULL DEFAULT 'ready' CHECK (status IN ('ready', 'claimed', 'waiting')),
    available_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    -- Claims since the last voluntary release: a count past max_deliveries means the workers
    -- running it keep dying, and it goes to dead_letters.
    deliveries       integer     NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    CHECK (status <> 'claimed' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX execution_queue_ready ON execution_queue (available_at) WHERE status = 'ready';
CREATE INDEX execution_queue_leases ON execution_queue (lease_expires_at) WHERE status = 'claimed';
CREATE INDEX execution_queue_owner ON execution_queue (lease_owner) WHERE status = 'claimed';

CREATE TABLE dead_letters (
    execution_id     uuid        PRIMARY KEY REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
    tenant           text        NOT NULL DEFAULT 'default',
    deliveries       integer     NOT NULL,
    reason           text        NOT NULL,
    last_lease_owner text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The fence: a worker's transaction starts by taking its lease row FOR UPDATE. If another worker
-- holds the lease now, it raises (SQLSTATE DWL01) and the whole transaction is rolled back, so
-- a worker that lost its lease cannot overwrite a newer result. The row lock also makes a
-- concurrent reclaim wait until this transaction ends.
CREATE FUNCTION dwf_hold_lease(p_execution_id uuid, p_owner text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM execution_queue
    WHERE execution_id = p_execution_id AND status = 'claimed' AND lease_owner = p_owner
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease on execution % is not held by %', p_execution_id, p_owner
            USING ERRCODE = 'DWL01';
    END IF;
END;
$$;
