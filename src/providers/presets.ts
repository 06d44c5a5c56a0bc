// Providers are data: an OpenAI-compatible provider is a base URL, an auth header, a model
// name mapping and a few quirks. Adding a provider is adding a row here (or a `Provider`
// row with kind OPENAI_COMPATIBLE and a base URL), never a new code path. Anthropic is the one
// provider with its own API (registry.ts picks the adapter from `api`); OpenAI also speaks the
// Responses API natively (`responses`).

export type ProviderKind = 'OPENAI_COMPATIBLE' | 'OPENROUTER' | 'ARK' | 'OPENAI' | 'DEEPSEEK' | 'QWEN' | 'ZHIPU' | 'ANTHROPIC' | 'SIMULATED';

export interface ProviderPreset {
  kind: ProviderKind;
  /** Default name for auto-configured providers; also the `provider/model` pin prefix. */
  defaultName: string;
  baseUrl: string | null;
  /** The API the provider speaks: which adapter (src/providers/) talks to it. */
  api: 'openai-compatible' | 'anthropic';
  /** How the credential is sent: `Authorization: Bearer …`, or the key alone in this header. */
  authHeader: 'authorization' | 'api-key' | 'x-api-key';
  /** Headers the provider wants on every request (OpenRouter attribution, …). */
  headers: Record<string, string>;
  /** Whether the provider serves `/embeddings` (a target that does not is skipped for embeddings). */
  embeddings: boolean;
  /**
   * The field a translated request's output limit goes in: OpenAI and OpenRouter take
   * `max_completion_tokens`; most compatible APIs know only the older `max_tokens`.
   */
  maxTokensField: 'max_completion_tokens' | 'max_tokens';
  /**
   * Known to ignore `max_completion_tokens`: a client's chat request, passed through, gets its
   * limit moved to `max_tokens` (ignored, the answer would be uncapped and cost more than its
   * budget reservation). Not assumed of a generic compatible URL (it may be OpenAI's, whose
   * reasoning models refuse `max_tokens`).
   */
  onlyMaxTokens: boolean;
  /**
   * Whether the provider serves OpenAI's Responses API (`POST {baseUrl}/responses`): then
   * Responses clients' requests pass through to it natively (built-in tools such as
   * web_search included) instead of being translated to chat completions. Only OpenAI's own
   * API does; a compatible provider that gains it is a preset change here.
   */
  responses: boolean;
  /**
   * Whether the provider takes `response_format: {type: 'json_schema'}` (structured outputs).
   * DeepSeek takes only `json_object` and refuses a schema (400): such a request skips it for a
   * target that can take it, instead of failing there.
   */
  jsonSchema: boolean;
}

const preset = (p: Partial<ProviderPreset> & Pick<ProviderPreset, 'kind' | 'defaultName' | 'baseUrl'>): ProviderPreset => ({
  api: 'openai-compatible',
  authHeader: 'authorization',
  headers: {},
  embeddings: true,
  maxTokensField: 'max_tokens',
  onlyMaxTokens: false,
  responses: false,
  jsonSchema: true,
  ...p,
});

export const PRESETS: Record<ProviderKind, ProviderPreset> = {
  OPENROUTER: preset({
    kind: 'OPENROUTER',
    defaultName: 'openrouter',
    baseUrl: 'https://openrouter.ai/api/v1',
    // OpenRouter uses these to attribute traffic; harmless elsewhere.
    headers: { 'x-title': 'Tollgate' },
    embeddings: false,
    maxTokensField: 'max_completion_tokens',
  }),
  // Volcengine ARK (Doubao). Model names (doubao-seed-1-6-250615) and endpoint ids (ep-…) are
  // both valid `model` values upstream, so no mapping is needed.
  ARK: preset({ kind: 'ARK', defaultName: 'ark', baseUrl: 'https://ark.cn-beijing.volces.com/api/v3', onlyMaxTokens: true }),
  OPENAI: preset({ kind: 'OPENAI', defaultName: 'openai', baseUrl: 'https://api.openai.com/v1', maxTokensField: 'max_completion_tokens', responses: true }),
  DEEPSEEK: preset({
    kind: 'DEEPSEEK',
    defaultName: 'deepseek',
    baseUrl: 'https://api.deepseek.com/v1',
    embeddings: false,
    onlyMaxTokens: true,
    jsonSchema: false,
  }),
  // Alibaba DashScope in OpenAI-compatible mode.
  QWEN: preset({ kind: 'QWEN', defaultName: 'qwen', baseUrl: 'https://dashscope.aliyuncs.com/compatible-mode/v1', onlyMaxTokens: true }),
  // Zhipu GLM: OpenAI-compatible under /api/paas/v4.
  ZHIPU: preset({ kind: 'ZHIPU', defaultName: 'zhipu', baseUrl: 'https://open.bigmodel.cn/api/paas/v4', onlyMaxTokens: true }),
  // Anthropic's Messages API ({baseUrl}/v1/messages): its own adapter, not OpenAI-compatible.
  ANTHROPIC: preset({
    kind: 'ANTHROPIC',
    defaultName: 'anthropic',
    baseUrl: 'https://api.anthropic.com',
    api: 'anthropic',
    authHeader: 'x-api-key',
    headers: { 'anthropic-version': '2023-06-01' },
    embeddings: false,
  }),
  OPENAI_COMPATIBLE: preset({ kind: 'OPENAI_COMPATIBLE', defaultName: 'custom', baseUrl: null }),
  // The loopback simulator (src/sim/simulated.ts); its base URL is given at runtime.
  SIMULATED: preset({ kind: 'SIMULATED', defaultName: 'simulated', baseUrl: null }),
};

export function isProviderKind(v: string): v is ProviderKind {
  return Object.hasOwn(PRESETS, v);
}
