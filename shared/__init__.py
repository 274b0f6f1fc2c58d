"""What the services share: settings, Redis keys, the stream protocol, the connection, the consumer loop."""
