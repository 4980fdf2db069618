"""What a person reads: terminal tables (terminal, catalog, machine, profile, compare), report.html (html, figures),
exports (export), all with one way of writing numbers (format). No torch: views read results tables, analyses and
plain data types from `rpbench.core`, never the code that measured them."""
