"""The real loader: a weight store on disk, a direct-I/O reader, inference from flash."""
