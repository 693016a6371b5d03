"""Sinks from Kafka topics into the warehouse."""
