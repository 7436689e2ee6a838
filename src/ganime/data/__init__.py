"""Data: find and decode sources, cache them as uint8, serve batches; builders for glyphs/emoji/faces."""
