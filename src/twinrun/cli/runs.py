"""`twinrun runs`, `twinrun show`: look at the run store."""
