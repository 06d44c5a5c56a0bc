-- Cache policy details (issue 4): which embedder a SEMANTIC route uses, and whether sampled
-- (non-deterministic) requests and tool-call answers may be cached.
ALTER TABLE "Route" ADD COLUMN "cacheEmbeddingModel" TEXT;
ALTER TABLE "Route" ADD COLUMN "cacheSampled" BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE "Route" ADD COLUMN "cacheToolCalls" BOOLEAN NOT NULL DEFAULT false;
