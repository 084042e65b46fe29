// One Lambda "container" as a real OS process: loads the built bundle (as Lambda would) and runs invocations
// sent over IPC, one at a time or concurrently, like the Lambda runtime's event loop. Its stdout/stderr are
// the container's logs.
const path = require('node:path');
const { handler } = require(path.resolve(process.argv[2]));

process.on('message', async (msg) => {
  const context = { awsRequestId: msg.requestId, getRemainingTimeInMillis: () => 10_000 };
  try {
    const result = await handler(msg.event, context);
    process.send({ id: msg.id, result });
  } catch (err) {
    process.send({ id: msg.id, thrown: String(err && err.name) });
  }
});
process.send({ ready: true });
