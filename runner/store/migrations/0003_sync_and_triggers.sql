-- GitOps sync runs, and the triggers of Active workflow versions (the scheduler and the webhook
-- router read `workflow_triggers`; they never parse definitions themselves).

CREATE TABLE sync_runs (
    sync_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text        NOT NULL DEFAULT 'default',
    repo         text        NOT NULL,
    branch       text,
    path         text,
    -- The commit applied (or looked at); NULL when the fetch itself failed.
    commit       text,
    -- What started it: the daemon's interval, its start, a push webhook, or `dwf sync`.
    reason       text        NOT NULL DEFAULT 'interval'
                             CHECK (reason IN ('start', 'interval', 'webhook', 'cli')),
    -- running; applied: changes written; unchanged: nothing to do; failed: fetch or apply failed,
    -- nothing changed; refused: a guard (mass delete) stopped it, nothing changed.
    status       text        NOT NULL DEFAULT 'running'
                             CHECK (status IN ('running', 'applied', 'unchanged', 'failed', 'refused')),
    replica      text,
    -- Counts by outcome ({"added": 1, "updated": 2, ...}) and one entry per file:
    -- {path, workflowId, outcome, version, diagnostics: [{line, column, severity, rule, message}]}.
    summary      jsonb       NOT NULL DEFAULT '{}',
    files        jsonb       NOT NULL DEFAULT '[]',
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CHECK (status = 'running' OR finished_at IS NOT NULL)
);
CREATE INDEX sync_runs_recent ON sync_runs (tenant, sync_id DESC);

-- One row per trigger of each Active workflow's current version, rewritten whenever a workflow's
-- current version or status changes (a trigger added over the API makes a new version, so the
-- definition stays the one source). Rows of a trigger id that survives a new version are
-- updated in place, so its fire cursor (`last_fired_at`) carries over.
CREATE TABLE workflow_triggers (
    tenant           text        NOT NULL DEFAULT 'default',
    workflow_id      text        NOT NULL,
    trigger_id       text        NOT NULL,
    workflow_version integer     NOT NULL,
    type             text        NOT NULL CHECK (type IN ('schedule', 'webhook', 'manual')),
    -- The trigger as the definition declares it (camelCase keys, as in the YAML).
    config           jsonb       NOT NULL,
    enabled          boolean     NOT NULL DEFAULT true,
    webhook_path     text,
    -- ok, or error with the reason (a malformed cron that slipped past lint, say): the scheduler
    -- reports it here and goes on with every other trigger.
    status           text        NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error')),
    status_message   text,
    -- The scheduled time of the last fire (the catch-up cursor), and what that fire started.
    last_fired_at    timestamptz,
    last_execution_id uuid       REFERENCES workflow_executions (execution_id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, workflow_id, trigger_id),
    FOREIGN KEY (tenant, workflow_id) REFERENCES workflows (tenant, workflow_id) ON DELETE CASCADE,
    CHECK ((type = 'webhook') = (webhook_path IS NOT NULL))
);
-- A webhook path routes to exactly one workflow of a tenant.
CREATE UNIQUE INDEX workflow_triggers_webhook_path
    ON workflow_triggers (tenant, webhook_path) WHERE webhook_path IS NOT NULL;
CREATE INDEX workflow_triggers_by_type ON workflow_triggers (type, tenant);

-- The scheduler and the webhook router rebuild when a trigger changes: a notice on this channel
-- carries the tenant; NOTIFY is only a hint, they poll too.
CREATE FUNCTION dwf_notify_triggers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dwf_triggers', COALESCE(NEW.tenant, OLD.tenant));
    RETURN NULL;
END;
$$;
CREATE TRIGGER workflow_triggers_changed
    AFTER INSERT OR DELETE OR UPDATE OF config, enabled, workflow_version, status
    ON workflow_triggers FOR EACH ROW EXECUTE FUNCTION dwf_notify_triggers();
