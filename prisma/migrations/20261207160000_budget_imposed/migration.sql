-- A budget set by a global admin (or the configuration) is imposed on its team: a team-bound
-- admin may tighten it, not loosen it. Budgets that exist already count as imposed: who set
-- them was not recorded, and loosening one must not become possible by upgrading.
ALTER TABLE "Budget" ADD COLUMN "imposed" BOOLEAN NOT NULL DEFAULT true;
