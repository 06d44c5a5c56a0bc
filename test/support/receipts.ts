// Reading what a test gateway recorded: its receipts as stored in ClickHouse (after a WAL
// flush), and checks that every request left exactly one, verifiable.
import type { Receipt } from '../../src/receipts/receipt.js';
import { RECEIPT_COLUMNS, rowToReceipt } from '../../src/receipts/rows.js';
import { verifyReceipt } from '../../src/receipts/verify.js';
import type { TestGateway } from './gateway.js';

/** Every stored receipt of one team, oldest first. */
export async function storedReceipts(gw: TestGateway, teamId: string): Promise<Receipt[]> {
  await gw.started.runtime.journal.flush();
  const rs = await gw.started.runtime.clickhouse.client.query({
    query: `SELECT ${RECEIPT_COLUMNS.join(', ')} FROM receipts WHERE team_id = {team:String} ORDER BY started_at, seq`,
    query_params: { team: teamId },
    format: 'JSONEachRow',
    clickhouse_settings: { date_time_output_format: 'simple', output_format_json_quote_decimals: 0, output_format_json_named_tuples_as_objects: 1 },
  });
  return (await rs.json<Record<string, unknown>>()).map(rowToReceipt);
}

/**
 * Asserts the contract for a set of requests: each answer named a receipt id, each id is
 * stored exactly once, the team has no other receipts, and every one verifies.
 */
export async function expectOneReceiptEach(gw: TestGateway, teamId: string, receiptIds: Array<string | null>): Promise<Receipt[]> {
  const stored = await storedReceipts(gw, teamId);
  const ids = stored.map((r) => r.receipt_id);
  const problems: string[] = [];
  if (receiptIds.some((id) => !id)) problems.push('an answer without x-tollgate-receipt-id');
  if (new Set(ids).size !== ids.length) problems.push(`duplicate receipt ids among ${ids.length} stored`);
  if (ids.length !== receiptIds.length) problems.push(`${receiptIds.length} requests but ${ids.length} receipts stored`);
  const missing = receiptIds.filter((id) => id && !ids.includes(id));
  if (missing.length) problems.push(`no stored receipt for ${missing.length} answers`);
  const jwks = await (await fetch(`${gw.url}/.well-known/tollgate/receipt-keys`)).json();
  const invalid = stored.filter((r) => !verifyReceipt(r, jwks).valid);
  if (invalid.length) problems.push(`${invalid.length} receipts do not verify`);
  if (problems.length) throw new Error(`receipt contract broken: ${problems.join('; ')}`);
  return stored;
}
