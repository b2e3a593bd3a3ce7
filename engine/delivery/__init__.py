"""Webhook delivery: routing, queues, retries, breakers, signing, responses."""
