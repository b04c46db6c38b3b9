"""Actions: the contract (`base`), the registry fed by entry points (`registry`), the built-ins."""
