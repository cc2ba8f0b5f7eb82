"""Recording: a sink on the broadcast that muxes the publisher's encoded frames into a
crash-safe file in records/, off the event loop, without re-encoding video."""
