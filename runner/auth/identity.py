"""An identity: who is calling, for which tenant, with which role.

Roles are ordered: an `admin` may do what an `operator` may, and an `operator` what a `viewer`
may, so a caller holds one effective role, the highest named in its token.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Role(enum.IntEnum):
    """What a caller may do: read (viewer), run (operator), change (admin)."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The role's name as tokens and docs write it (`viewer`)."""
        return self.name.lower()

    @classmethod
    def highest(cls, names: Iterable[str]) -> Role | None:
        """The highest role among `names` (unknown names are not roles); None when none is."""
        known = [cls[name.upper()] for name in names if name.upper() in cls.__members__]
        return max(known, default=None)


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller: its principal (`sub`, or None when loose mode was told none), its tenant, and
    its role (None: a verified caller with no role)."""

    principal: str | None
    tenant: str
    role: Role | None

    def may(self, needed: Role) -> bool:
        """Whether this caller holds `needed` (or a higher role)."""
        return self.role is not None and self.role >= needed
