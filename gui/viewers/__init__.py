"""Viewers (Qt). This module holds presentation constants only, so it imports fast.

One definition of each overlay name the Tumor workbench's panels share, and the label colours.
"""

# BraTS label -> (r, g, b) 0..255, the usual ITK-SNAP / BraTS figure colours
LABEL_COLORS = {1: (230, 50, 50), 2: (60, 200, 80), 3: (255, 215, 0), 4: (255, 215, 0)}

# overlay (layer) names of the linked MRI viewers
SEGMENTATION = "segmentation"              # the observed label map
FIT_U = "fitted tumor"                     # fitted concentration u (scalar)
FIT_CORE = "fitted core outline"           # boundary voxels of u >= core threshold
FIT_WHOLE = "fitted whole outline"         # boundary voxels of u >= whole threshold
DB_ORIGINS = "database origins"            # point set: one origin per database run
REGISTERED = "registered scan"             # atlas check: the patient's scan in MNI space
FIT_LAYERS = (FIT_U, FIT_CORE, FIT_WHOLE)
