"""Only loads: one Definitions per domain folder under defs/, merged."""

from __future__ import annotations

import dagster as dg

from dagster_project.defs import billing, dmarc, domains, teams, warehouse

defs = dg.Definitions.merge(warehouse.defs, billing.defs, dmarc.defs, domains.defs, teams.defs)
