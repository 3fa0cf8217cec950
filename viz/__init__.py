"""Views of a `Trace`: pure functions, arrays in, PIL images or matplotlib Figures out (see docs/views/README.md).

heatmap (1) · grid (2) · sinks (3) · ranking (4) · compare (5) · evidence (6) · tokens (7) · diff (8);
queries picks rows/heads, colors/canvas/figures draw.
"""
