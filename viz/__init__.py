"""Views of a `Trace`: pure functions, arrays in, PIL images or matplotlib Figures out (see docs/views/README.md).

heatmap (1) · grid (2) · sinks (3) · ranking (4) · compare (5) · evidence (6, with phi_by_layer) · tokens (7) ·
diff (8) · reverse (9: patch → text, layers, heads) · explain (10: methods × runs); queries picks rows/heads,
colors/canvas/figures draw.
"""
