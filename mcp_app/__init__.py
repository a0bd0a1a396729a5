"""MultiCellPose app: NiceGUI pages over a Backend (never torch or cellpose directly)."""
