"""bench: choreography vs orchestration order sagas on a real Kafka broker."""
__version__ = "0.1.0"
