"""Workflow documents: YAML loading with positions, the JSON Schema, the typed model, the rules."""
