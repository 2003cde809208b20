"""SyncPolicy drift check: compare a system's records against the owner's, as a one-shot job."""
