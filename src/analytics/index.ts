// Analytics over receipts (DESIGN §8): one module per question, all parameterized SQL.

export { type CacheRow, cacheStats } from './cacheStats.js';
export * from './common.js';
export { costPerTask, type TaskCostRow } from './costPerTask.js';
export { experimentResults, type VariantResult, wilsonInterval } from './experimentResults.js';
export { EXACT_BELOW, type LatencyRow, latency } from './latency.js';
export { decodeCursor, encodeCursor, type ReceiptConnection, type ReceiptVerification, receipt, receipts, verifyReceipt } from './receipts.js';
export * from './run.js';
export { SqlFragment, sql, trusted } from './sql.js';
export { INTERVALS, type Interval, type TimeBucket, timeSeries } from './timeSeries.js';
export { type UsageOptions, type UsageRow, usage } from './usage.js';
