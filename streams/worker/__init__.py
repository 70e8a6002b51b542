"""The stream worker: the Faust application shell, the Kafka I/O and the four processors."""
