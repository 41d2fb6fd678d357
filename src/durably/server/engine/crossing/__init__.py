"""What crosses partitions (`durably serve --partitions N`): the durable outbox (outbox.py, with the payload
format) and the inbox that applies each delivered message exactly once (inbox.py)."""
