"""The page's panels: each module builds one panel's components (a typed dataclass) and wires its events."""
