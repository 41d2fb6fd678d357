"""Small apps that `durably serve` runs in the Kafka end-to-end tests, one per flow."""
