"""The gRPC edge every service shares: authentication, permissions, interceptors,
errors, page tokens, request checks and wire encoding."""
