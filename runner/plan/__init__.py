"""Compiled plans: definition checksums, the graph the engine walks, its cache and its drawings.

`spec` never imports this package; networkx stays behind it.
"""
