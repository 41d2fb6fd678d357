"""`durably serve --partitions N`: one engine process per partition, one supervisor, one server to the outside."""
