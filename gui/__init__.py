"""Qt only: main window, workbenches, viewers, linking, workers."""
