"""Test helper: run a function on many threads released at the same moment."""
import threading


def run_threads(count, fn):
    """Runs `fn` on `count` threads that start together; returns each result, or the exception it raised."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(i):
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as err:  # noqa: BLE001 - the test inspects it
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
