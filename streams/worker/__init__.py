"""The stream worker: the Faust application shell, the partition runtime, the Kafka I/O and the four processors.
Nothing is defined here; touch the module that does the job (streams.worker.app lists them)."""
