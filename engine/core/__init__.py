"""The records and small policies every other package may use.

Owns: the model (Event, EventDraft, Delivery...), the event rules (names, data, ttl),
the in-process bus of committed events, tokens and scopes, the token-bucket rate limit,
the retry policy (what an outcome means, when to try again) and webhook signatures.
Imports nothing of the engine's but its own modules. No I/O: only the bus uses trio, for
its subscribers' channels.
"""
