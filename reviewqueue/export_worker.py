"""A worker process for large exports: ``python -m reviewqueue.export_worker``.

Reads slice tasks (JSON, one per line) on stdin and answers each on stdout; started
and fed by ``reviewqueue.export``. It exits when stdin closes.
"""

from reviewqueue.export import worker_main

if __name__ == "__main__":
    worker_main()
