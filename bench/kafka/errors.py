"""The one error type the broker layer raises: its message is shown to the user as is."""


class BrokerError(RuntimeError):
    """A broker could not be installed, started or reached; the message says what to do."""
