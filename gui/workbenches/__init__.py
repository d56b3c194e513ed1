"""The three workbenches shown as tabs in the main window."""
