-- The trigger fire log: every decision about a schedule's scheduled time (fired, skipped for
-- overlap, missed) and every accepted webhook delivery, with its reason. The unique key on a
-- schedule's scheduled time is what makes a fire a single decision across replicas.

CREATE TABLE trigger_fires (
    fire_id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant             text        NOT NULL DEFAULT 'default',
    workflow_id        text        NOT NULL,
    trigger_id         text        NOT NULL,
    trigger_type       text        NOT NULL CHECK (trigger_type IN ('schedule', 'webhook')),
    -- A schedule's scheduled time (the last of `fires` when one row stands for several missed
    -- ones, from `first_scheduled_at`); NULL for a webhook delivery.
    scheduled_at       timestamptz,
    first_scheduled_at timestamptz,
    fires              integer     NOT NULL DEFAULT 1 CHECK (fires >= 1),
    -- fired: an execution was started; skipped: a run of this trigger was still running
    -- (overlap: skip) or the activation condition was false; missed: no replica fired it in time
    -- and the catch-up policy did not run it; failed: starting it failed (reason says why).
    outcome            text        NOT NULL
                                   CHECK (outcome IN ('fired', 'skipped', 'missed', 'failed')),
    reason             text,
    execution_id       uuid        REFERENCES workflow_executions (execution_id) ON DELETE SET NULL,
    -- The process that decided (host:pid).
    replica            text,
    decided_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (tenant, workflow_id) REFERENCES workflows (tenant, workflow_id) ON DELETE CASCADE,
    CHECK ((trigger_type = 'schedule') = (scheduled_at IS NOT NULL))
);
-- One decision per scheduled time: the replica whose INSERT lands first decides; the others'
-- INSERT … ON CONFLICT DO NOTHING finds it taken (waiting for its commit) and does nothing.
CREATE UNIQUE INDEX trigger_fires_once
    ON trigger_fires (tenant, workflow_id, trigger_id, scheduled_at)
    WHERE scheduled_at IS NOT NULL;
CREATE INDEX trigger_fires_recent ON trigger_fires (tenant, workflow_id, trigger_id, fire_id DESC);
-- Deleting an execution sets its fires' execution_id NULL: found through this index.
CREATE INDEX trigger_fires_by_execution ON trigger_fires (execution_id)
    WHERE execution_id IS NOT NULL;

-- Since when a trigger has been enabled on an Active version: fires before that were never the
-- scheduler's to catch up (a trigger added, re-enabled or re-activated starts afresh).
ALTER TABLE workflow_triggers ADD COLUMN active_since timestamptz NOT NULL DEFAULT now();
