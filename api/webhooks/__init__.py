"""Customer webhooks: signing (Standard Webhooks), the event-stream consumer, delivery."""
