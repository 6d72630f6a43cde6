"""Objects: ids, the object types and their canonical encodings, chunking, sealing, packs
and the object database. No click, no printing."""
