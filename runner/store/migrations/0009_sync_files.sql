-- What a sync already knows of a repository, so a fresh process does not lint it all again.
--
-- A sync lints every workflow file of a commit; only a long-running daemon kept the results
-- (in memory), so every `dwf sync` process and every restarted daemon linted 1,000 unchanged
-- files again (4.4 s). `sync_files` keeps each file's own lint result (diagnostics, the
-- summary the rules across files read, checksum and declared status; not the document, which
-- `workflow_definitions` has) by the git blob id it was linted from. A sync lints only files
-- whose blob is not here under the same `stamp`: a hash of everything else a result depends
-- on (the runner's lint code, the action types and their parameter schemas, the repository's
-- default options), so an upgrade, a plugin or a new dwf.yaml default lints everything again.
-- One row per path of the tenant's repository, rewritten in the sync's transaction; rows of
-- files gone from the repository are deleted there too.

CREATE TABLE sync_files (
    tenant      text        NOT NULL,
    path        text        NOT NULL,
    blob        text        NOT NULL,
    stamp       text        NOT NULL,
    result      jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, path)
);

-- The tenant a run wrote the repository's workflows into: the one its dwf.yaml names, else the
-- runner's (`tenant`, under which the run is recorded and locked). NULL when the run ended
-- before it read dwf.yaml (a failed fetch).
ALTER TABLE sync_runs ADD COLUMN target_tenant text;
