"""Every embedder behind one protocol (`base.Embedder`); `registry.load_embedder` turns a name into one."""
