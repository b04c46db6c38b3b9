-- The action catalog (SPEC §10): what the registry of the runner that started last provides.
-- Written at start by `dwf serve` and `dwf worker` from the registry (built-ins and every
-- `dataworkflows.actions` entry point); read by `dwf actions --from-db` and tools. It is
-- installation-wide, not tenant data: every tenant runs the same installed code.

CREATE TABLE connectors (
    -- The prefix of its action types: `slack` for `slack.post-message`.
    connector       text        NOT NULL,
    -- The Python distribution that provides it (two may add types under one prefix), and that
    -- distribution's version.
    package         text        NOT NULL,
    package_version text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, package)
);

CREATE TABLE action_catalog (
    action_type       text        PRIMARY KEY,
    connector         text        NOT NULL,
    package           text        NOT NULL,
    version           text        NOT NULL,
    description       text        NOT NULL DEFAULT '',
    parameters_schema jsonb       NOT NULL,
    outputs_schema    jsonb       NOT NULL,
    -- Where the class lives (module:Class), to tell two providers of one type apart.
    entry_point       text        NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (connector, package) REFERENCES connectors (connector, package) ON DELETE CASCADE
);
CREATE INDEX action_catalog_connector ON action_catalog (connector, package);
