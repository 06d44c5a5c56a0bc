// OpenAI embeddings (POST /v1/embeddings): always a passthrough to an OpenAI-compatible
// upstream; there is no canonical chat form and no stream.
import { validateEmbeddings } from '../gateway/validate.js';
import type { ClientProtocol, ParsedRequest } from './protocol.js';

export const embeddingsProtocol: ClientProtocol = {
  endpoint: 'embeddings',
  path: '/v1/embeddings',
  wire: 'embeddings',
  authorization: (req) => req.headers.authorization,
  parse(body): ParsedRequest {
    const e = validateEmbeddings(body);
    return {
      body,
      chat: null,
      model: e.model,
      stream: false,
      includeUsage: false,
      endUser: typeof e.user === 'string' ? e.user : null,
      metadata: e.metadata ?? {},
      nativeOnly: { reason: 'embeddings are served only by OpenAI-compatible upstreams', param: 'model' },
    };
  },
  answerId: () => '',
  errorBody: (error) => error.body(),
  render: (answer) => answer,
  encoder: () => {
    throw new Error('embeddings are never streamed');
  },
};
