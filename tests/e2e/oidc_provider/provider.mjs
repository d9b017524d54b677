// A real OpenID provider (npm oidc-provider 8.x) on loopback, for ephemeral_auth's OIDC tests.
//
// Started by tests/e2e (conftest.py, test_oidc_hostile.py):  node provider.mjs   with, in the environment,
//   OIDC_PORT           port to listen on (127.0.0.1 only)
//   OIDC_CLIENTS        JSON list of {client_id, client_secret, redirect_uris}
//   OIDC_LOG_REQUESTS   optional; "1": print one line per authorization and token request (below)
// It prints "listening <issuer>" on stdout once ready.
//
// Clients authenticate with client_secret_post, ID tokens are RS256, PKCE (S256) is required.
// devInteractions (the library's bundled dev login and consent forms) are on: any login/password
// signs in and the login becomes `sub`. findAccount derives the other claims from the login:
//   email           = the login if it contains "@", else "<login>@example.com"
//   email_verified  = false when the login contains "unverified", else true
//   amr             = ["pwd", "otp", "mfa"] when the login starts with "mfa" (a provider that
//                     did MFA says so with RFC 8176's "mfa"), ["pwd", "otp"] when it starts with
//                     "otp" (one-time password: a method, not a claim of several factors); set at
//                     login, as a real provider does after a second factor; absent otherwise.
//
// With OIDC_LOG_REQUESTS=1, each request to the authorization or token endpoint prints, once answered:
//   request authorization <status> client_id=<client> redirect_uri=<redirect_uri>
//   request token <status> client_id=<client>
// (client_id "-" when the provider did not identify one). Tests count these lines, e.g. to show that
// an authorization code was never sent to a given provider's token endpoint.
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]').map((client) => ({
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_post',
  id_token_signed_response_alg: 'RS256',
  ...client,
}));

// A fresh signing key per run: nothing secret is checked in.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `test-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

const configuration = {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { methods: ['S256'], required: () => true },
  features: { devInteractions: { enabled: true } },
  // amr under openid: the ID token carries it (set at login, see below).
  claims: { openid: ['sub', 'amr'], email: ['email', 'email_verified'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: id.includes('@') ? id : `${id}@example.com`,
          email_verified: !id.includes('unverified'),
        };
      },
    };
  },
};

const provider = new Provider(issuer, configuration);

// The dev login form cannot say which factors were used; a real provider records them at login.
// Wrap the instance's own interactionFinished so that "mfa..." and "otp..." logins carry amr as described above.
const interactionFinished = provider.interactionFinished.bind(provider);
provider.interactionFinished = async (req, res, result, options) => {
  const login = result.login ? String(result.login.accountId) : '';
  if (login.startsWith('mfa')) {
    result.login.amr = ['pwd', 'otp', 'mfa'];
  } else if (login.startsWith('otp')) {
    result.login.amr = ['pwd', 'otp'];
  }
  return interactionFinished(req, res, result, options);
};

if (process.env.OIDC_LOG_REQUESTS === '1') {
  // A Koa middleware of the provider's own app: it sees each request after the provider answered it.
  provider.use(async (ctx, next) => {
    await next();
    const client = ctx.oidc?.client?.clientId ?? '-';
    if (ctx.path === '/token' && ctx.method === 'POST') {
      console.log(`request token ${ctx.status} client_id=${client}`);
    } else if (ctx.path === '/auth') {
      const redirectUri = ctx.oidc?.params?.redirect_uri ?? ctx.query.redirect_uri ?? '-';
      console.log(`request authorization ${ctx.status} client_id=${client} redirect_uri=${redirectUri}`);
    }
  });
}

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
