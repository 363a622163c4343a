"""Console sub-commands, one module per area, registered in service.cli."""
