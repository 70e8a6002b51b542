"""Operating the worker: topics, lag, metrics, the status page and the client-area API."""
