"""Messages: Polygon wire frames, internal batches and events, API payloads, ORM tables."""
