-- Budgets (issue 5): what a budget does when its counter store (Redis) is unreachable.
ALTER TABLE "Budget" ADD COLUMN "failOpen" BOOLEAN NOT NULL DEFAULT false;
