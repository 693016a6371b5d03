"""Background jobs on Redis Streams (consumer groups scale across processes and hosts)."""
