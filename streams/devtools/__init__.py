"""For developers and the demo: local Kafka and Redis, a sample broker day, publishing."""
