"""A Python program that gets a LimitRail token from the broker `npm start` runs on this machine, the way your service
gets one from a deployed stage: the client package (limitrail_token_broker) with boto3's default credential chain.
Everything local comes from the environment (docs/callers.md, "Call the local broker from your own code"):

    set -a; . .local/caller.env; set +a    # region, Lambda and STS endpoints, function name, audience, AWS files
    export AWS_PROFILE=granted              # a demo role's session; nogrant is refused
    python3 examples/local_python.py [scope ...]

(the package installed, or from this checkout: PYTHONPATH=clients/python/src). Against a deployed stage, the same code
runs with your service's own credentials and no endpoint variables.
"""

import hashlib
import os
import sys

from limitrail_token_broker import TokenBrokerClient, TokenBrokerError, invoke_transport

function_name = os.environ.get("LIMITRAIL_BROKER_FUNCTION")
if not function_name:
    print("LIMITRAIL_BROKER_FUNCTION is not set: load .local/caller.env first (see docs/callers.md)", file=sys.stderr)
    sys.exit(2)
scopes = sys.argv[1:] or ["limitrail.usage.read"]

# AWS_ENDPOINT_URL_LAMBDA points the invokes at serverless-offline, AWS_ENDPOINT_URL_STS the identity proofs at moto.
broker = TokenBrokerClient(invoke_transport(function_name, audience=os.environ.get("LIMITRAIL_BROKER_AUDIENCE")))
try:
    token = broker.token(scopes)
except TokenBrokerError as err:
    print(f"refused: {err.error} ({err.status}): {err.description}", file=sys.stderr)
    sys.exit(1)
# A token is a credential: show only its length and a fingerprint.
fingerprint = hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]
print(f"got a token for {' '.join(scopes)}: {len(token)} characters, sha256 {fingerprint}…")
