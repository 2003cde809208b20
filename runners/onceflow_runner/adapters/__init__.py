"""The data plane's I/O: NATS JetStream, outbound HTTP and the transport under it, secrets."""
