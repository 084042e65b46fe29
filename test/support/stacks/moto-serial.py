"""moto_server, answering one request at a time.

moto_server serves each request on its own thread, and moto's DynamoDB does not lock an item between evaluating a
condition expression and applying the update: two concurrent conditional UpdateItems can both pass their
condition. Real DynamoDB applies each conditional write atomically, and the refresh lease depends on it. Serving
requests one after another gives local runs and tests the same guarantee. Same arguments as moto_server.
"""
import sys

import moto.server as server

_run_simple = server.run_simple


def _run_simple_serially(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


server.run_simple = _run_simple_serially

if __name__ == "__main__":
    server.main(sys.argv[1:])
