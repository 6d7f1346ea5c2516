//! Output of the simulator (DESIGN.md §10): the comparison table as text, CSV and SVG.
