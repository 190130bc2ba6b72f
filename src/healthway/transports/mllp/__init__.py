"""The MLLP listener (DESIGN §4): HL7v2 over TCP or TLS from allowlisted peers, each frame acknowledged only after
its commit. ``listener`` owns the socket and the connections, ``frames`` turns one frame into an intake submission
and its ACK, ``peers`` decides which source a connection speaks for."""
