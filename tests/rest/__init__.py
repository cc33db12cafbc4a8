"""The REST API through the real gateway (`make gateway`), held to the source documents."""
