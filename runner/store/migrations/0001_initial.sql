-- Workflows, their versions and compiled plans; executions, their action attempts and events.
-- Every table holding tenant data carries `tenant` from the start, so tenancy changes no query
-- shape later. Statuses are held to their values by CHECK constraints.

CREATE TABLE workflows (
    tenant          text        NOT NULL DEFAULT 'default',
    workflow_id     text        NOT NULL,
    display_name    text,
    status          text        NOT NULL DEFAULT 'Draft'
                                CHECK (status IN ('Draft', 'Active', 'Archived')),
    -- Who owns the definition: git (read-only over the API), a local file, or the API.
    managed_by      text        NOT NULL DEFAULT 'api' CHECK (managed_by IN ('git', 'local', 'api')),
    current_version integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, workflow_id)
);

CREATE TABLE workflow_definitions (
    tenant         text        NOT NULL DEFAULT 'default',
    workflow_id    text        NOT NULL,
    version        integer     NOT NULL CHECK (version >= 1),
    checksum       text        NOT NULL,
    definition     jsonb       NOT NULL,
    source_kind    text        NOT NULL CHECK (source_kind IN ('git', 'local', 'api')),
    source_repo    text,
    source_commit  text,
    source_path    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, workflow_id, version),
    -- The same content is the same version: reformatting a file makes no new one.
    UNIQUE (tenant, workflow_id, checksum),
    FOREIGN KEY (tenant, workflow_id) REFERENCES workflows (tenant, workflow_id) ON DELETE CASCADE
);

-- Deferred, so a workflow and its first version can be inserted in one transaction either way.
ALTER TABLE workflows
    ADD CONSTRAINT workflows_current_version_fkey
    FOREIGN KEY (tenant, workflow_id, current_version)
    REFERENCES workflow_definitions (tenant, workflow_id, version)
    DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE workflow_plans (
    tenant           text        NOT NULL DEFAULT 'default',
    checksum         text        NOT NULL,
    compiler_version integer     NOT NULL,
    plan             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, checksum, compiler_version)
);

CREATE TABLE workflow_executions (
    execution_id        uuid        PRIMARY KEY,
    tenant              text        NOT NULL DEFAULT 'default',
    workflow_id         text        NOT NULL,
    workflow_version    integer     NOT NULL,
    status              text        NOT NULL DEFAULT 'Pending'
                                    CHECK (status IN ('Pending', 'Running', 'Succeeded', 'Failed', 'Cancelled')),
    request_id          text        NOT NULL,
    correlation_id      text        NOT NULL,
    principal           text,
    trigger_type        text        NOT NULL
                                    CHECK (trigger_type IN ('manual', 'api', 'schedule', 'webhook', 'subworkflow')),
    trigger_id          text,
    trigger_payload     jsonb       NOT NULL DEFAULT '{}',
    event               jsonb       NOT NULL DEFAULT '{}',
    vars                jsonb,
    outputs             jsonb,
    error               jsonb,
    parent_execution_id uuid        REFERENCES workflow_executions (execution_id) ON DELETE SET NULL,
    parent_node_id      text,
    depth               integer     NOT NULL DEFAULT 0 CHECK (depth >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    cancel_requested_at timestamptz,
    -- A repeated request returns the existing execution, never a second one.
    UNIQUE (tenant, workflow_id, request_id),
    -- An execution keeps the version it ran; such a version cannot be deleted under it.
    FOREIGN KEY (tenant, workflow_id, workflow_version)
        REFERENCES workflow_definitions (tenant, workflow_id, version) ON DELETE RESTRICT,
    CHECK (status IN ('Pending', 'Running') OR finished_at IS NOT NULL)
);
-- Listing newest first, per workflow and per status, with (created_at, execution_id) cursors.
CREATE INDEX workflow_executions_by_workflow
    ON workflow_executions (tenant, workflow_id, created_at DESC, execution_id DESC);
CREATE INDEX workflow_executions_by_status
    ON workflow_executions (tenant, status, created_at DESC, execution_id DESC);
CREATE INDEX workflow_executions_by_created
    ON workflow_executions (tenant, created_at DESC, execution_id DESC);
CREATE INDEX workflow_executions_by_parent
    ON workflow_executions (parent_execution_id) WHERE parent_execution_id IS NOT NULL;

-- One row per action attempt (attempt >= 1), written when it starts and completed when it ends;
-- a node that never ran because every incoming edge was skipped has one row with attempt 0.
CREATE TABLE action_executions (
    action_execution_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant              text        NOT NULL DEFAULT 'default',
    execution_id        uuid        NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
    node_id             text        NOT NULL,
    attempt             integer     NOT NULL CHECK (attempt >= 0),
    action_type         text,
    status              text        NOT NULL
                                    CHECK (status IN ('Running', 'Succeeded', 'Failed', 'RetriableFailure',
                                                      'Cancelled', 'Skipped')),
    parameters_json     jsonb,
    outputs_json        jsonb,
    error_json          jsonb,
    reused              boolean     NOT NULL DEFAULT false,
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    UNIQUE (execution_id, node_id, attempt),
    CHECK (status = 'Running' OR finished_at IS NOT NULL)
);

CREATE TABLE execution_events (
    event_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text        NOT NULL DEFAULT 'default',
    execution_id uuid        NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
    node_id      text,
    attempt      integer,
    kind         text        NOT NULL,
    data         jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX execution_events_by_execution ON execution_events (execution_id, event_id);

-- Things actions created in other systems, and the outputs to reuse when a node with the same
-- (workflow, node, idempotency key) runs again.
CREATE TABLE workflow_resource_links (
    link_id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant              text        NOT NULL DEFAULT 'default',
    workflow_id         text        NOT NULL,
    node_id             text        NOT NULL,
    idempotency_key     text,
    execution_id        uuid        REFERENCES workflow_executions (execution_id) ON DELETE SET NULL,
    action_execution_id bigint      REFERENCES action_executions (action_execution_id) ON DELETE SET NULL,
    system              text        NOT NULL,
    resource_type       text        NOT NULL,
    external_id         text        NOT NULL,
    url                 text,
    outputs             jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant, workflow_id) REFERENCES workflows (tenant, workflow_id) ON DELETE CASCADE
);
CREATE INDEX workflow_resource_links_by_key
    ON workflow_resource_links (tenant, workflow_id, node_id, idempotency_key, link_id DESC)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX workflow_resource_links_by_execution ON workflow_resource_links (execution_id);

CREATE TABLE workflow_execution_hierarchy (
    tenant              text        NOT NULL DEFAULT 'default',
    parent_execution_id uuid        NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
    child_execution_id  uuid        NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
    parent_node_id      text        NOT NULL,
    depth               integer     NOT NULL CHECK (depth >= 1),
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (parent_execution_id, child_execution_id),
    UNIQUE (child_execution_id)
);
