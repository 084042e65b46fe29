// A Node program that gets a LimitRail token from the broker `npm start` runs on this machine, the way your service
// gets one from a deployed stage: the client package (@limitrail/token-broker-client) with the default AWS credential
// chain. Everything local comes from the environment (docs/callers.md, "Call the local broker from your own code"):
//
//   set -a; . .local/caller.env; set +a    # region, Lambda and STS endpoints, function name, audience, AWS files
//   export AWS_PROFILE=granted              # a demo role's session; nogrant is refused
//   node examples/local-node.mjs [scope ...]
//
// Against a deployed stage, the same code runs with your service's own credentials and no endpoint variables.
import { createHash } from 'node:crypto';
import { invokeTransport, TokenBrokerClient, TokenBrokerError } from '@limitrail/token-broker-client';

const functionName = process.env.LIMITRAIL_BROKER_FUNCTION;
if (!functionName) {
  console.error('LIMITRAIL_BROKER_FUNCTION is not set: load .local/caller.env first (see docs/callers.md)');
  process.exit(2);
}
const scopes = process.argv.length > 2 ? process.argv.slice(2) : ['limitrail.usage.read'];

// AWS_ENDPOINT_URL_LAMBDA points the invokes at serverless-offline, AWS_ENDPOINT_URL_STS the identity proofs at moto.
const broker = new TokenBrokerClient(
  invokeTransport(functionName, { audience: process.env.LIMITRAIL_BROKER_AUDIENCE }),
);
try {
  const token = await broker.token(scopes);
  // A token is a credential: show only its length and a fingerprint.
  const fingerprint = createHash('sha256').update(token).digest('hex').slice(0, 12);
  console.log(`got a token for ${scopes.join(' ')}: ${token.length} characters, sha256 ${fingerprint}…`);
} catch (err) {
  if (!(err instanceof TokenBrokerError)) throw err;
  console.error(`refused: ${err.error} (${err.status}): ${err.description}`);
  process.exit(1);
}
