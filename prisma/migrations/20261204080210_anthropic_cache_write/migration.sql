-- Anthropic upstreams (issue 14): a provider kind, and a price for prompt tokens written to a
-- provider's cache (Anthropic's cache creation, billed above the input price).
ALTER TYPE "ProviderKind" ADD VALUE 'ANTHROPIC' BEFORE 'SIMULATED';

ALTER TABLE "Price" ADD COLUMN "cacheWritePerMTok" DECIMAL(18,9);
