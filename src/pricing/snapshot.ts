// The price snapshot shipped with Tollgate and how it becomes price versions.
//
// Entries are keyed by provider *kind*, not name: an operator's provider "or-prod" of kind
// OPENROUTER gets the OpenRouter list. Every import goes through the store's price
// versioning, so receipts keep pointing at the version they were billed with, and an
// import that changes nothing creates no version.
import type { ProviderKind } from '../providers/presets.js';
import type { PriceRecord, SetPriceInput } from '../store/admin/pricing.js';
import { SNAPSHOT_2025_10 } from './snapshot-2025-10.js';

export interface SnapshotEntry {
  kind: ProviderKind;
  /** The model name as the provider's API takes it. */
  model: string;
  /** ISO 4217, as the vendor lists it. */
  currency: string;
  inputPerMTok: number;
  outputPerMTok: number;
  /** Null: cached prompt tokens are billed at the input price. */
  cachedInputPerMTok: number | null;
  /** Prompt tokens written to the provider's cache (Anthropic); absent: billed at the input price. */
  cacheWritePerMTok?: number | null;
  /** The vendor's pricing page. */
  source: string;
  /** YYYY-MM-DD: when this list price was taken. */
  asOf: string;
  /** Which tier a tiered price is, and what is not modelled. */
  note?: string;
}

export interface PriceSnapshot {
  id: string;
  asOf: string;
  /** USD per unit of each non-USD currency used by the entries. */
  usdRates: Record<string, number>;
  entries: SnapshotEntry[];
}

/** The snapshot `tollgate prices import-snapshot` and `tollgate start` use. */
export const PRICE_SNAPSHOT: PriceSnapshot = SNAPSHOT_2025_10;

/** A configured provider, as much of it as the mapping needs. */
export interface SnapshotTarget {
  name: string;
  kind: ProviderKind;
  /** Client model name → upstream model name: an alias is priced like its upstream model. */
  modelMap?: Record<string, string>;
}

/** The setPrice inputs that put `snapshot` onto `targets` (pure; nothing is written). */
export function planSnapshotPrices(targets: readonly SnapshotTarget[], snapshot: PriceSnapshot = PRICE_SNAPSHOT): SetPriceInput[] {
  const byKind = new Map<ProviderKind, Map<string, SnapshotEntry>>();
  for (const e of snapshot.entries) {
    let models = byKind.get(e.kind);
    if (!models) byKind.set(e.kind, (models = new Map()));
    models.set(e.model, e);
  }
  const out: SetPriceInput[] = [];
  for (const target of targets) {
    const models = byKind.get(target.kind);
    if (!models) continue;
    const priced = new Map<string, SnapshotEntry>(models);
    // Requests name the client model; the gateway sends the mapped one upstream and bills
    // by provider + client model, so an alias needs the upstream model's price.
    for (const [alias, upstream] of Object.entries(target.modelMap ?? {})) {
      const entry = models.get(upstream);
      if (entry && !priced.has(alias)) priced.set(alias, entry);
    }
    for (const [model, e] of priced) out.push(toPriceInput(target.name, model, e, snapshot));
  }
  return out;
}

function toPriceInput(provider: string, model: string, e: SnapshotEntry, snapshot: PriceSnapshot): SetPriceInput {
  const usd = e.currency === 'USD';
  const rate = usd ? null : snapshot.usdRates[e.currency];
  if (!usd && rate === undefined) throw new Error(`price snapshot ${snapshot.id}: no USD rate for ${e.currency} (${e.kind} ${e.model})`);
  return {
    provider,
    model,
    // The store converts with usdRate; the …Usd names are the contract's, see SetPriceInput.
    inputPerMTokUsd: e.inputPerMTok,
    outputPerMTokUsd: e.outputPerMTok,
    cachedInputPerMTokUsd: e.cachedInputPerMTok,
    cacheWritePerMTokUsd: e.cacheWritePerMTok ?? null,
    currency: e.currency,
    usdRate: rate,
    source: `${e.source} (list price as of ${e.asOf}, Tollgate price snapshot ${snapshot.id}${usd ? '' : `, ${e.currency}→USD ${rate}`})`,
  };
}

/** Far enough ahead that every price version is in effect by then (and a date the stores take). */
const LAST_DATE = new Date('9999-12-31T00:00:00Z');

export interface SnapshotStore {
  currentPrices(at?: Date): Promise<Array<Pick<PriceRecord, 'provider' | 'model'>>>;
  setPriceIfChanged(input: SetPriceInput): Promise<{ price: PriceRecord; created: boolean }>;
}

export interface SnapshotImport {
  snapshot: string;
  asOf: string;
  /** New price versions, in the order made. */
  created: PriceRecord[];
  /** Entries whose current version already bills the same. */
  unchanged: number;
  /** Entries left alone because the model had a price and `onlyMissing` was set. */
  skipped: number;
}

/**
 * Writes the snapshot's prices for `targets` as new versions where they differ from the
 * current one. `onlyMissing` (what `tollgate start` uses) never touches a model that already
 * has a price, whatever its amounts: an operator's price wins over the list.
 */
export async function importSnapshot(
  store: SnapshotStore,
  targets: readonly SnapshotTarget[],
  opts: { onlyMissing?: boolean; snapshot?: PriceSnapshot } = {},
): Promise<SnapshotImport> {
  const snapshot = opts.snapshot ?? PRICE_SNAPSHOT;
  const plan = planSnapshotPrices(targets, snapshot);
  const result: SnapshotImport = { snapshot: snapshot.id, asOf: snapshot.asOf, created: [], unchanged: 0, skipped: 0 };
  // Priced: any version, one scheduled for later included (the operator's, which the list must not pre-empt).
  const priced = opts.onlyMissing ? new Set((await store.currentPrices(LAST_DATE)).map((p) => `${p.provider}/${p.model}`)) : null;
  for (const input of plan) {
    if (priced?.has(`${input.provider}/${input.model}`)) {
      result.skipped++;
      continue;
    }
    const { price, created } = await store.setPriceIfChanged(input);
    if (created) result.created.push(price);
    else result.unchanged++;
  }
  return result;
}
