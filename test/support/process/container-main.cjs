// One Lambda "container" as a real OS process: loads the built bundle (as Lambda would) and runs invocations
// sent over IPC, concurrently, like the Lambda runtime's event loop. Its stdout/stderr are the container's logs.
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { handler } = require(path.resolve(process.argv[2]));
const TIMEOUT_MS = Number(process.env.TEST_FUNCTION_TIMEOUT_MS || 15000);

process.on('message', async (msg) => {
  const startedAt = Date.now();
  const context = { awsRequestId: randomUUID(), getRemainingTimeInMillis: () => TIMEOUT_MS - (Date.now() - startedAt) };
  try {
    const result = await handler(msg.event, context);
    process.send({ id: msg.id, result });
  } catch (err) {
    process.send({ id: msg.id, thrown: String(err?.name) });
  }
});
process.send({ ready: true, version: process.version, arch: process.arch });
