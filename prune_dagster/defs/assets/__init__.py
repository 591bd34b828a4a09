"""One module per stage; each asset loads its inputs, calls a pure step and attaches metadata."""
