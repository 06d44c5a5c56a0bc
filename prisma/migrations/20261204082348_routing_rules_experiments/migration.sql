-- CreateEnum
CREATE TYPE "AcceptCheck" AS ENUM ('JSON', 'TOOL_ARGS', 'NOT_TRUNCATED', 'NON_EMPTY', 'NOT_REFUSED');

-- CreateEnum
CREATE TYPE "StickyBy" AS ENUM ('END_USER', 'TASK', 'API_KEY', 'REQUEST');

-- AlterEnum
ALTER TYPE "RouteStrategy" ADD VALUE 'CASCADE';

-- AlterTable
ALTER TABLE "Route" ADD COLUMN     "accept" "AcceptCheck"[] DEFAULT ARRAY[]::"AcceptCheck"[],
ADD COLUMN     "rules" JSONB NOT NULL DEFAULT '[]';

-- CreateTable
CREATE TABLE "Experiment" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "route" TEXT NOT NULL,
    "stickyBy" "StickyBy" NOT NULL,
    "active" BOOLEAN NOT NULL DEFAULT true,
    "variants" JSONB NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Experiment_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Experiment_name_key" ON "Experiment"("name");

-- CreateIndex
CREATE INDEX "Experiment_route_idx" ON "Experiment"("route");
