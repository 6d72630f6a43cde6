"""Volume backends and store transports. They move opaque named bytes and know nothing of
objects."""
