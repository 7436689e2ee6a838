"""Fonts from glyph models: trace bitmaps to outlines (trace), build .ttf/.otf files (build), specimens, and the
run -> font pipeline (make). Needs the `fonts` extra (fontTools, potracer)."""
