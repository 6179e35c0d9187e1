"""CDS Hooks cards from a plan: pure functions, no HTTP, one module per card kind.

`builder` decides which cards a hook call gets; `treatment`, `safety`, `orders` and
`information` render them; `parts` holds what every card shares (source, links into the
protocol page, extension, footer line). The clinical decisions about draft orders are made in
`cds_service.clinical.draft_orders`.
"""

from cds_service.hooks.cards.builder import CardBuilder
from cds_service.hooks.cards.parts import HookContext

__all__ = ["CardBuilder", "HookContext"]
