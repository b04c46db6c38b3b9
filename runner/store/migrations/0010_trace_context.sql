-- The W3C trace context an execution was started in (SPEC §13): the caller's `traceparent`
-- and `tracestate` (the execute route's or a webhook delivery's headers), or for a subworkflow
-- the parent node's attempt span. An execution may be conducted long after it was started, by
-- any worker, and again after a crash or a hand-back: the context travels with the row, as the
-- correlation id does, so its first span is a child of the caller's wherever it runs, and a
-- resumed run links back to it.
--
-- Both come normalised by the runner (a traceparent of version 00 is 55 characters; a
-- tracestate beyond 512 is trimmed, as W3C Trace Context allows); NULL when none came in.

ALTER TABLE workflow_executions
    ADD COLUMN traceparent text CHECK (length(traceparent) = 55),
    ADD COLUMN tracestate  text CHECK (length(tracestate) <= 512);
