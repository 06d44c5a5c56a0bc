-- AlterTable
ALTER TABLE "ApiKey" ADD COLUMN     "allowedCidrs" TEXT[] DEFAULT ARRAY[]::TEXT[];

-- AlterTable
ALTER TABLE "AccessToken" ADD COLUMN     "allowedCidrs" TEXT[] DEFAULT ARRAY[]::TEXT[],
ADD COLUMN     "expiresAt" TIMESTAMP(3);

-- CreateTable
CREATE TABLE "AuditEntry" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "actorName" TEXT,
    "action" TEXT NOT NULL,
    "target" TEXT,
    "teamId" UUID,
    "before" JSONB,
    "after" JSONB,

    CONSTRAINT "AuditEntry_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "AuditEntry_at_id_idx" ON "AuditEntry"("at", "id");

-- CreateIndex
CREATE INDEX "AuditEntry_teamId_at_id_idx" ON "AuditEntry"("teamId", "at", "id");

-- The audit log is append-only in the database too, not only in code: any UPDATE, DELETE or
-- TRUNCATE of "AuditEntry" fails, whoever sends it. Only the table's owner can lift this
-- (ALTER TABLE … DISABLE TRIGGER), deliberately; README "Audit log" shows how to also run
-- Tollgate as a role that does not own the table and may only INSERT and SELECT.
CREATE FUNCTION "tollgate_audit_append_only"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER "AuditEntry_append_only_rows"
  BEFORE UPDATE OR DELETE ON "AuditEntry"
  FOR EACH ROW EXECUTE FUNCTION "tollgate_audit_append_only"();

CREATE TRIGGER "AuditEntry_append_only_truncate"
  BEFORE TRUNCATE ON "AuditEntry"
  FOR EACH STATEMENT EXECUTE FUNCTION "tollgate_audit_append_only"();
