"""The one error type the broker layer raises: its message is shown to the user as is."""
from bench.errors import BadEnvironment


class BrokerError(BadEnvironment):
    """A broker could not be installed, started or reached; the message says what to do (exit 1)."""
