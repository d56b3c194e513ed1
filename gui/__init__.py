"""Qt only: main window, workbenches, viewers, linking, workers."""
import pyqtgraph as pg

# Arrays are (rows, cols) = (y, x) everywhere in the GUI.
pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
