"""The three services: the HTTP gateway and the two stream workers."""
