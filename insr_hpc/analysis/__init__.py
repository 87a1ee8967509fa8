"""Analysis layer: reads stores and run directories (never imports numerics)."""
