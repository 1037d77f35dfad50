"""``automc serve``: compression experiments as a shared HTTP service.

- :mod:`guard`: the token, the allow-list for user code, paths confined to the root;
- :mod:`jobs`: the queue — one ``automc search`` process per experiment, state in the run
  folders, resumed after a crash of the server;
- :mod:`worker`: what those processes run (lower priority, dying with the server);
- :mod:`views`: each run folder's progress, front and events, refreshed by one watcher;
- :mod:`app` and :mod:`routes`: the FastAPI app (OpenAPI docs at ``/docs``).
"""
