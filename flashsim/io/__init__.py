"""Direct-I/O engine: O_DIRECT reads with N in flight (native AIO or threads) into aligned buffers."""
