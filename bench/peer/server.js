// The certified peer for the benchmark: panva's oidc-provider (OpenID Certified), configured like
// the AuthPI issuer under test: one confidential M2M client per signing algorithm (ES256, RS256),
// client_secret_basic, the client_credentials grant, JWT access tokens signed with the client's
// algorithm. Two cluster workers on loopback, so it gets the same two cores as `authpi serve
// --workers 2`.
//
// Environment: PEER_PORT (default 4000), PEER_WORKERS (default 2), PEER_CLIENTS (JSON list of
// {client_id, client_secret, alg, scope}). Keys are generated once by the primary and handed to
// the workers, so every worker publishes and signs with the same JWKS.
import cluster from 'node:cluster';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import process from 'node:process';

const port = Number(process.env.PEER_PORT || 4000);
const workers = Number(process.env.PEER_WORKERS || 2);
const clients = JSON.parse(process.env.PEER_CLIENTS || '[]');

function jwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg, use: 'sig' };
}

if (cluster.isPrimary) {
  const keys = [
    jwk('ec', { namedCurve: 'P-256' }, 'ES256'),
    jwk('rsa', { modulusLength: 2048 }, 'RS256'),
  ];
  const env = {
    PEER_KEYS: JSON.stringify(keys),
    PEER_COOKIE_KEY: randomBytes(32).toString('base64url'),
  };
  for (let i = 0; i < workers; i += 1) cluster.fork(env);
  let stopping = false;
  const stop = () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers)) worker.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', () => {
    if (!stopping && Object.keys(cluster.workers).length === 0) process.exit(1);
    if (stopping && Object.keys(cluster.workers).length === 0) process.exit(0);
  });
} else {
  const { default: Provider } = await import('oidc-provider');
  const algOf = Object.fromEntries(clients.map((c) => [c.client_id, c.alg]));
  const scopeOf = Object.fromEntries(clients.map((c) => [c.client_id, c.scope || '']));
  const scopes = [...new Set(clients.flatMap((c) => (c.scope || '').split(' ').filter(Boolean)))];
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: c.alg,
      scope: c.scope || undefined,
    })),
    jwks: { keys: JSON.parse(process.env.PEER_KEYS) },
    cookies: { keys: [process.env.PEER_COOKIE_KEY] },
    scopes: ['openid', 'offline_access', ...scopes],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Like AuthPI, a client_credentials token without a `resource` is a JWT for the client itself.
        defaultResource: () => 'urn:authpi-bench:api',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, _resource, client) => ({
          scope: scopeOf[client.clientId] || scopes.join(' '),
          accessTokenFormat: 'jwt',
          accessTokenTTL: 1800,
          jwt: { sign: { alg: algOf[client.clientId] || 'ES256' } },
        }),
      },
    },
  });
  provider.proxy = false;
  provider.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}
