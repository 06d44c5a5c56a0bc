// Analytics over receipts (DESIGN §8): one module per question, all parameterized SQL.
export * from './common.js';
export { sql, trusted, SqlFragment } from './sql.js';
export { usage, type UsageRow, type UsageOptions } from './usage.js';
export { cacheStats, type CacheRow } from './cacheStats.js';
export { latency, EXACT_BELOW, type LatencyRow } from './latency.js';
export { timeSeries, INTERVALS, type Interval, type TimeBucket } from './timeSeries.js';
export { costPerTask, type TaskCostRow } from './costPerTask.js';
export { experimentResults, wilsonInterval, type VariantResult } from './experimentResults.js';
export { receipts, receipt, verifyReceipt, encodeCursor, decodeCursor, type ReceiptConnection, type ReceiptVerification } from './receipts.js';
