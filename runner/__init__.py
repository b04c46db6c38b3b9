"""DataWorkflows runner: a declarative GitOps workflow runner.

The public surface is small on purpose; everything else is internal and may move.
"""

__version__ = "0.1.0"
