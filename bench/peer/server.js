// The certified peer for the benchmark: panva's oidc-provider (OpenID Certified), configured like
// the AuthPI issuer under test:
//
// * one confidential M2M client per signing algorithm (ES256, RS256): client_secret_basic, the
//   client_credentials grant, JWT access tokens signed with the client's algorithm (through
//   resourceIndicators, since oidc-provider issues opaque tokens by default);
// * one confidential web client (PEER_WEB_CLIENT): authorization_code + refresh_token,
//   client_secret_basic, PKCE required, ID tokens ES256, refresh tokens on every code exchange
//   (like AuthPI, without asking for offline_access) and rotated on every use (rotateRefreshToken:
//   true; a rotated token presented again revokes the whole grant, oidc-provider's reuse detection),
//   introspection enabled. Its access tokens are for the userinfo endpoint, which in oidc-provider
//   only accepts opaque access tokens (a JWT access token is always for a resource server), so the
//   user's access tokens are opaque: userinfo and introspection look them up in the store;
// * AuthPI's default lifetimes: access token 30 min, ID token 1 h, refresh token 7 days.
//
// Storage: oidc-provider's own MemoryAdapter logic, run by the cluster primary for both workers
// (each worker's adapter calls are IPC messages to the primary), so a token issued by one worker is
// found by the other, as with one database behind AuthPI's two workers. The store is a plain
// in-memory map (never evicts; entries expire with their TTL): cheaper than the database AuthPI
// writes to, so the comparison leans towards the peer.
//
// Sign-in: the interaction pages are replaced by one that approves at once (login as the
// login_hint or "bench-user", consent to the requested scopes), so a browser goes through
// /auth -> /interaction/<uid> -> /auth/<uid> -> redirect_uri?code=... with no password step (the
// refresh, userinfo and introspection scenarios do not involve the password).
//
// POST /bench/mint (only with the PEER_BENCH_SECRET header) clones a real refresh token N times:
// each clone gets a new session and grant (copies of the token's) and a new refresh token record written
// through the same adapter, exactly what the token endpoint would have stored; AuthPI's pool is
// minted the same way (bench/seed.py).
//
// Environment: PEER_PORT (default 4000), PEER_WORKERS (default 2), PEER_CLIENTS (JSON list of
// {client_id, client_secret, alg, scope}), PEER_WEB_CLIENT (JSON {client_id, client_secret,
// redirect_uri}), PEER_BENCH_SECRET. Keys are generated once by the primary and handed to the
// workers, so every worker publishes and signs with the same JWKS.
import cluster from 'node:cluster';
import { generateKeyPairSync, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import process from 'node:process';

const port = Number(process.env.PEER_PORT || 4000);
const workers = Number(process.env.PEER_WORKERS || 2);
const clients = JSON.parse(process.env.PEER_CLIENTS || '[]');
const webClient = process.env.PEER_WEB_CLIENT ? JSON.parse(process.env.PEER_WEB_CLIENT) : null;
const benchSecret = process.env.PEER_BENCH_SECRET || '';

const TTL = {
  AccessToken: 1800,
  ClientCredentials: 1800,
  IdToken: 3600,
  RefreshToken: 604800,
  AuthorizationCode: 60,
  Interaction: 600,
  Session: 14 * 86400,
  Grant: 14 * 86400,
};
const API_RESOURCE = 'urn:authpi-bench:api';

function jwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg, use: 'sig' };
}

async function primary() {
  const { default: MemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');
  const { default: LRU } = await import('oidc-provider/lib/helpers/lru.js');
  // One store for both workers; large enough never to evict (entries still expire by TTL).
  const store = new LRU({ maxSize: 50_000_000 });
  const adapters = new Map();
  const adapterFor = (model) => {
    if (!adapters.has(model)) adapters.set(model, new MemoryAdapter(model, store));
    return adapters.get(model);
  };
  const keys = [
    jwk('ec', { namedCurve: 'P-256' }, 'ES256'),
    jwk('rsa', { modulusLength: 2048 }, 'RS256'),
  ];
  const env = {
    PEER_KEYS: JSON.stringify(keys),
    PEER_COOKIE_KEY: randomBytes(32).toString('base64url'),
  };
  cluster.on('message', async (worker, msg) => {
    if (!msg || msg.type !== 'adapter') return;
    let result;
    let error;
    try {
      if (msg.method === 'upsertMany') {
        const adapter = adapterFor(msg.model);
        for (const [id, payload, expiresIn] of msg.args[0]) await adapter.upsert(id, payload, expiresIn);
      } else {
        result = await adapterFor(msg.model)[msg.method](...msg.args);
      }
    } catch (err) {
      error = String(err?.stack || err);
    }
    worker.send({ type: 'adapter', seq: msg.seq, result, error });
  });
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
}

// --- worker side of the shared store ----------------------------------------------------------

let seq = 0;
const pending = new Map();
function callPrimary(model, method, args) {
  return new Promise((resolve, reject) => {
    seq += 1;
    pending.set(seq, { resolve, reject });
    process.send({ type: 'adapter', seq, model, method, args });
  });
}

class SharedAdapter {
  constructor(model) {
    this.model = model;
  }

  upsert(id, payload, expiresIn) { return callPrimary(this.model, 'upsert', [id, payload, expiresIn]); }

  upsertMany(entries) { return callPrimary(this.model, 'upsertMany', [entries]); }

  find(id) { return callPrimary(this.model, 'find', [id]); }

  findByUid(uid) { return callPrimary(this.model, 'findByUid', [uid]); }

  findByUserCode(userCode) { return callPrimary(this.model, 'findByUserCode', [userCode]); }

  consume(id) { return callPrimary(this.model, 'consume', [id]); }

  destroy(id) { return callPrimary(this.model, 'destroy', [id]); }

  revokeByGrantId(grantId) { return callPrimary(this.model, 'revokeByGrantId', [grantId]); }
}

function secretMatches(given) {
  if (!benchSecret || typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(benchSecret);
  return a.length === b.length && timingSafeEqual(a, b);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

async function worker() {
  process.on('message', (msg) => {
    if (!msg || msg.type !== 'adapter') return;
    const waiter = pending.get(msg.seq);
    pending.delete(msg.seq);
    if (!waiter) return;
    if (msg.error) waiter.reject(new Error(msg.error));
    else waiter.resolve(msg.result);
  });
  const { default: Provider } = await import('oidc-provider');
  const algOf = Object.fromEntries(clients.map((c) => [c.client_id, c.alg]));
  const scopeOf = Object.fromEntries(clients.map((c) => [c.client_id, c.scope || '']));
  const m2mIds = new Set(clients.map((c) => c.client_id));
  const scopes = [...new Set(clients.flatMap((c) => (c.scope || '').split(' ').filter(Boolean)))];
  const configured = clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: c.alg,
    scope: c.scope || undefined,
  }));
  if (webClient) {
    configured.push({
      client_id: webClient.client_id,
      client_secret: webClient.client_secret,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [webClient.redirect_uri],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    });
  }
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    adapter: SharedAdapter,
    clients: configured,
    jwks: { keys: JSON.parse(process.env.PEER_KEYS) },
    cookies: { keys: [process.env.PEER_COOKIE_KEY] },
    scopes: ['openid', 'offline_access', 'profile', 'email', ...scopes],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'given_name'] },
    // The bench user is a fixed record (AuthPI reads its user from the database).
    findAccount: (_ctx, sub) => ({
      accountId: sub,
      claims: () => ({ sub, email: `${sub}@bench.example.com`, email_verified: true, name: 'Bench User', given_name: 'Bench' }),
    }),
    ttl: TTL,
    pkce: { required: () => true },
    // Like AuthPI: a refresh token on every code exchange of a client allowed the grant, and
    // rotation on every use.
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // oidc-provider's default policy, spelled out: a confidential client may introspect.
        allowedPolicy: (_ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Like AuthPI, a client_credentials token without a `resource` is a JWT for the client
        // itself; the web client's tokens are for userinfo (opaque, see above).
        defaultResource: (ctx) => (m2mIds.has(ctx.oidc.client?.clientId) ? API_RESOURCE : undefined),
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, _resource, client) => ({
          scope: scopeOf[client.clientId] || scopes.join(' '),
          accessTokenFormat: 'jwt',
          accessTokenTTL: TTL.AccessToken,
          jwt: { sign: { alg: algOf[client.clientId] || 'ES256' } },
        }),
      },
    },
  });
  provider.proxy = false;

  // The interaction page: approve at once (login + consent to what was asked).
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      const { prompt, params, session } = details;
      const accountId = session?.accountId || params.login_hint || 'bench-user';
      const result = {};
      if (prompt.name === 'login') result.login = { accountId };
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId: params.client_id });
      if (params.scope) grant.addOIDCScope(params.scope);
      const missingClaims = prompt.details?.missingOIDCClaims;
      if (missingClaims) grant.addOIDCClaims(missingClaims);
      result.consent = { grantId: await grant.save() };
      const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
      ctx.status = 303;
      ctx.redirect(redirectTo);
      return;
    }
    if (ctx.method === 'POST' && ctx.path === '/bench/mint') {
      if (!secretMatches(ctx.get('x-bench-secret'))) {
        ctx.status = 404;
        return;
      }
      const { refresh_token: value, count } = await readJson(ctx.req);
      const tokens = new SharedAdapter('RefreshToken');
      const grants = new SharedAdapter('Grant');
      const sessions = new SharedAdapter('Session');
      const template = await tokens.find(value);
      const grant = template && (await grants.find(template.grantId));
      const session = template?.sessionUid && (await sessions.findByUid(template.sessionUid));
      if (!template || !grant || !session) {
        ctx.status = 400;
        ctx.body = { error: 'unknown refresh token' };
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      const remaining = (exp) => (exp ? exp - now : undefined);
      const id = () => randomBytes(32).toString('base64url');
      const minted = [];
      for (let start = 0; start < count; start += 1000) {
        const grantRows = [];
        const sessionRows = [];
        const tokenRows = [];
        for (let i = start; i < Math.min(count, start + 1000); i += 1) {
          // A token is bound to its session's grant for the client (expiresWithSession), so each
          // clone gets its own session and grant, as AuthPI's clones each get their own rp session.
          const grantId = id();
          const sessionId = id();
          const uid = id();
          const sid = randomUUID();
          const jti = id();
          const authorization = { ...session.authorizations[template.clientId], grantId, sid };
          grantRows.push([grantId, { ...grant, jti: grantId, iat: now }, remaining(grant.exp)]);
          sessionRows.push([
            sessionId,
            { ...session, jti: sessionId, uid, iat: now, authorizations: { [template.clientId]: authorization } },
            remaining(session.exp),
          ]);
          tokenRows.push([
            jti,
            { ...template, jti, grantId, sessionUid: uid, sid, iat: now, iiat: now, exp: now + TTL.RefreshToken },
            TTL.RefreshToken,
          ]);
          minted.push(jti);
        }
        await grants.upsertMany(grantRows);
        await sessions.upsertMany(sessionRows);
        await tokens.upsertMany(tokenRows);
      }
      ctx.body = { refresh_tokens: minted };
      return;
    }
    await next();
  });
  provider.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}

if (cluster.isPrimary) await primary();
else await worker();
