"""Pure logic: no framework, no SQL, no sockets."""
