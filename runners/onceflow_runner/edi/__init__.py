"""EDI with trading partners: the inbound SFTP poller (docs/edi.md)."""
