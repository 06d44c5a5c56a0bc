// Which adapter serves a provider. Apart from adapter.ts, whose interface the adapters
// implement, so that they do not import the module that imports them.
import type { Provider } from '../routing/catalog.js';
import type { UpstreamAdapter } from './adapter.js';
import { anthropic } from './anthropic.js';
import { openAiCompatible, openAiWithResponses } from './openai-compatible.js';

/** Providers are data: the adapter follows from the API the provider's preset speaks. */
export function adapterFor(provider: Provider): UpstreamAdapter {
  if (provider.preset.api === 'anthropic') return anthropic;
  return provider.preset.responses ? openAiWithResponses : openAiCompatible;
}
