"""Default limits of expressions, shared by lint, the engine and the settings (SPEC §4, §14)."""

#: A condition's evaluation: its time and its memory.
DEFAULT_CONDITION_TIME_LIMIT_SECONDS = 0.05
DEFAULT_CONDITION_MEMORY_LIMIT_BYTES = 32 * 1024 * 1024
#: The most one rendering of a template may produce.
DEFAULT_MAX_RENDERED_BYTES = 1024 * 1024
