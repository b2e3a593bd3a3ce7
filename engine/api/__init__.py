"""The REST and SSE API: routes, auth, publish, streams, metrics and health."""
